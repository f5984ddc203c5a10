"""Use cases of the notifier, in two halves that never overlap, plus the operators' reads.

- `intake`: events in -> contact view folded, messages planned, rendered and stored
  (NT-2, NT-3, NT-4, NT-5). Runs inside the inbox transaction; never calls a provider.
- `dispatch`: due messages out -> claims, attempts, retries, dead letters, replays
  (NT-4, NT-6). The provider is called between two transactions, never inside one.
- `reports`: what operators see (OPS-1), never content.

Handlers take a command (or events) and a `NotifierUnitOfWork` that is already inside its
transaction: no SQL, no connections, no transactions opened here. Every instant comes
from the injected clock.
"""
