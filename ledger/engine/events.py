"""What the engine is told: typed, frozen inputs (h11's events, raft's MsgHup and MsgBeat).

The driver (the trio node, or the load simulator) turns everything that happens — a timer,
a peer's message, a client's batch, a block fetched, a piece of work it ran for the engine
— into one of these and calls ``Engine.step(event)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.ready import CommittedBlock, ProposalRequest, ValidateRequest
from ledger.chain.execute import ChainTip, ExecutedBlock, NotIncludable
from ledger.chain.types import Block, Transaction, TxRejected
from ledger.engine.admission import AdmittedTx


@dataclass(frozen=True, slots=True)
class Tick:
    """The driver's clock moved (every ``tick_ms``)."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Wake:
    """A wake-up the engine asked for (``Outputs.wake_at_ms``) is due."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class PeerMessage:
    """A consensus message from a peer (the body after the wire family byte)."""

    body: bytes


@dataclass(frozen=True, slots=True)
class Checked:
    """One transaction after the off-loop admission work: admitted (with its sender's
    committed nonce, read at ``read_height``) or refused."""

    outcome: AdmittedTx | TxRejected
    account_nonce: int = 0
    read_height: int = 0


@dataclass(frozen=True, slots=True)
class Submitted:
    """Transactions checked for the mempool; ``from_client``: through the API (backpressure
    applies, and they are gossiped), else gossip from a peer."""

    checked: tuple[Checked, ...]
    now_ms: int
    from_client: bool


@dataclass(frozen=True, slots=True)
class Fetched:
    """Blocks with their commit certificates, fetched from a peer for catch-up; ``decoded``,
    when the driver already decoded them off its event loop (``Block.decode`` of exactly
    those bytes, within the block size limit), in the same order (None: did not decode)."""

    blocks: tuple[tuple[bytes, bytes], ...]
    decoded: tuple[Block | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Validated:
    """A ``ValidateWork`` ran: the executed block, or why it is invalid."""

    request: ValidateRequest
    outcome: ExecutedBlock | str
    elapsed_us: int


@dataclass(frozen=True, slots=True)
class Built:
    """A ``BuildWork`` ran: the executed block and the candidates left out (with why)."""

    request: ProposalRequest
    executed: ExecutedBlock
    skipped: tuple[tuple[Transaction, NotIncludable], ...]
    elapsed_us: int


@dataclass(frozen=True, slots=True)
class Persisted:
    """A committed block is durable in the store; ``tip`` is the store's new head."""

    committed: CommittedBlock
    executed: ExecutedBlock
    tip: ChainTip
    now_ms: int


Event = Tick | Wake | PeerMessage | Submitted | Fetched | Validated | Built | Persisted
