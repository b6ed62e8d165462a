"""Every bound the replica enforces on its memory and work, with its unit in its name.

The configuration (genesis) bounds the protocol: the watermark window, the pipeline, block
sizes. These bound what a peer can make a replica hold: buffers for views and heights it
has not reached, certified blocks waiting for their predecessor, replies served.

House rule: constants only; a bound every replica of a chain must agree on belongs in the
configuration, not here.
"""

from __future__ import annotations

from typing import Final

#: Buffered messages for views this replica has not entered yet, per sender (count).
MAX_BUFFERED_PER_SENDER: Final = 64
#: ... and their total size per sender (bytes), so buffered PRE-PREPAREs stay bounded.
MAX_BUFFERED_BYTES_PER_SENDER: Final = 16 * 1024 * 1024
#: PRE-PREPAREs (with payloads) are held only this many pipelines above the last commit.
PRE_PREPARE_LOOKAHEAD_PIPELINES: Final = 2
#: Certified blocks from peers held while waiting for their predecessor (count).
MAX_CATCHUP_BLOCKS: Final = 256
#: BLOCK replies served per peer per tick (each carries a whole payload).
MAX_BLOCK_REPLIES_PER_PEER_PER_TICK: Final = 4
#: VIEW-CHANGEs kept per sender (its highest views).
MAX_VIEW_CHANGES_PER_SENDER: Final = 4
#: Cap on the consecutive-view-change exponent (the timeout itself is capped by config).
MAX_BACKOFF_EXPONENT: Final = 32
