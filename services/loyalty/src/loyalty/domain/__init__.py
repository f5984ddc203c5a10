"""Pure loyalty rules and the points-ledger fold: no I/O, no clock, no framework."""
