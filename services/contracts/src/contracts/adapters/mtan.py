"""The port through which contracts asks identity whether an mTAN confirmed a change.

Identity does not exist yet, so the only adapter refuses every change: no bank details
change without a confirmed mTAN (ID-6), never a silent pass.
"""

from __future__ import annotations

from typing import Protocol

from contracts.domain.mtan import MtanConfirmation


class MtanPort(Protocol):
    async def confirmation(
        self, customer_id: str, mtan_id: str, reference: str
    ) -> MtanConfirmation | None: ...


class NoMtanService:
    """Until identity provides mTAN checks: nothing is ever confirmed."""

    async def confirmation(
        self, customer_id: str, mtan_id: str, reference: str
    ) -> MtanConfirmation | None:
        return None
