"""The named mutants of ``make mutants``: each one a small, deliberate bug in a safety check.

A mutant is one exact text replacement in one file (``old`` must occur exactly once, or
the table has rotted: tests/mutants/test_mutant_table.py fails in CI) and the tests that
must fail because of it. For the consensus core the killing tests are simulator runs
(the fast tier: 200 seeds with Byzantine validators), not unit tests; for the checker
they are runs deliberately broken in one way that the checker must flag.

House rule: data only. tests/mutants/run.py applies the table, never the working tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    #: Path relative to the repository root.
    path: str
    old: str
    new: str
    #: pytest node ids (relative to the root) that must fail with the mutant applied.
    kill: tuple[str, ...]
    why: str


_SIM: Final = "tests/consensus/test_pbft_simulator.py"
#: The simulator's fast tier: B = f Byzantine validators, 200 seeds, zero violations.
SIM_FAST_TIER: Final = f"{_SIM}::test_b_equals_f_200_seeds_commit_everything_with_no_violations"
#: B = f + 1 must be caught as agreement violations.
SIM_ABOVE_F: Final = f"{_SIM}::test_b_above_f_the_checker_finds_agreement_violations"
#: Simulator runs with K = 2, W = 4 and a pipeline of 4: the watermarks bind all the time.
SIM_TIGHT_WATERMARKS: Final = (
    f"{_SIM}::test_4_3_tight_watermarks_and_frequent_checkpoints_keep_every_property"
)
_CHECKER: Final = "tests/consensus/test_sim_checker.py"
_AUDIT: Final = "tests/consensus/test_sim_audit.py"
#: Simulator runs whose view-0 primary crashes right after proposing and restarts in view 0.
SIM_RESTARTED_PRIMARY: Final = (
    f"{_AUDIT}::test_a_primary_restarted_mid_view_only_repeats_what_it_signed"
)
_EPOCHS: Final = "tests/consensus/test_pbft_sim_epochs.py"
#: The epoch simulator's fast tier: 40 seeds of set changes under faults, zero violations.
SIM_EPOCH_TIER: Final = f"{_EPOCHS}::test_epoch_fast_tier_every_change_takes_effect_and_agrees"


MUTANTS: Final[tuple[Mutant, ...]] = (
    # ------------------------------------------------------------------ quorum arithmetic
    Mutant(
        "quorum_size_f_plus_1",
        "consensus/quorum.py",
        "    return (n + f + 2) // 2\n",
        "    return (n + f) // 2\n",
        (SIM_FAST_TIER,),
        "quorums of f+1 no longer intersect in an honest validator",
    ),
    # ------------------------------------------------------------------ signature checks
    Mutant(
        "signature_valid_always_true",
        "consensus/certificates.py",
        "    return config.verify_signature(\n        config.validators[message.sender],",
        "    return True or config.verify_signature(\n        config.validators[message.sender],",
        (SIM_FAST_TIER,),
        "every signed message and certificate member passes without its signature",
    ),
    Mutant(
        "intake_skips_signature",
        "consensus/intake.py",
        '    if not signature_valid(config, message):\n        raise Rejected("bad_signature"',
        '    if False:\n        raise Rejected("bad_signature"',
        (SIM_FAST_TIER,),
        "peer messages are accepted without checking the sender's signature",
    ),
    Mutant(
        "commit_certificate_skips_signatures",
        "consensus/certificates.py",
        "        if not config.verify_signature(\n            config.validators[index],",
        "        if False and not config.verify_signature(\n            config.validators[index],",
        (SIM_FAST_TIER,),
        "a commit certificate's signatures are not verified",
    ),
    # ------------------------------------------------------------------ certificate signers
    Mutant(
        "commit_certificate_duplicate_signers",
        "consensus/certificates.py",
        "    if not _strictly_increasing(indices) or len(indices) < config.quorum:\n",
        "    if len(indices) < config.quorum:\n",
        (SIM_FAST_TIER,),
        "one validator's COMMIT counted q times makes a certificate",
    ),
    Mutant(
        "checkpoint_proof_duplicate_signers",
        "consensus/certificates.py",
        "    if not _strictly_increasing(senders) or len(senders) < config.quorum:\n",
        "    if len(senders) < config.quorum:\n",
        (SIM_FAST_TIER,),
        "one validator's CHECKPOINT counted q times makes a checkpoint stable",
    ),
    Mutant(
        "prepared_certificate_any_signers",
        "consensus/certificates.py",
        "    if len(senders) != config.quorum - 1 or not _strictly_increasing(senders) "
        "or primary in senders:\n",
        "    if len(senders) != config.quorum - 1:\n",
        (SIM_FAST_TIER,),
        "prepared certificates with repeated signers or the primary's own PREPARE pass",
    ),
    Mutant(
        "pre_prepare_from_any_sender",
        "consensus/intake.py",
        "    if message.sender != config.primary(header.view):\n",
        "    if False:\n",
        (SIM_FAST_TIER,),
        "a PRE-PREPARE is accepted from any validator, not only the view's primary",
    ),
    # ------------------------------------------------------------------ view change
    Mutant(
        "new_view_drops_prepared_certificates",
        "consensus/viewchange.py",
        "        for proof in vc.prepared:\n            best = by_height.get(proof.header.height)",
        "        for proof in vc.prepared[:0]:\n            best = by_height.get(proof.header.height)",
        (SIM_FAST_TIER,),
        "a new view re-proposes nothing: blocks prepared (maybe committed) are replaced",
    ),
    # ------------------------------------------------------------------ watermarks
    Mutant(
        "high_watermark_unchecked",
        "consensus/intake.py",
        "        if body.height > stable_height + config.watermark_window:\n",
        "        if False:\n",
        (SIM_FAST_TIER,),
        "votes far above the window are accepted (unbounded slot log)",
    ),
    Mutant(
        "low_watermark_unchecked",
        "consensus/intake.py",
        "        if body.height <= stable_height:\n",
        "        if False:\n",
        (SIM_TIGHT_WATERMARKS, SIM_FAST_TIER),
        "votes at or below the stable checkpoint reopen collected slots",
    ),
    Mutant(
        "proposal_above_high_watermark",
        "consensus/normal_case.py",
        "        if height > self._checkpoints.high:\n            return\n",
        "",
        (SIM_TIGHT_WATERMARKS, SIM_FAST_TIER),
        "the primary proposes past the high watermark",
    ),
    # ------------------------------------------------------------------ checkpoints
    Mutant(
        "checkpoint_stable_with_f_plus_1",
        "consensus/checkpoints.py",
        "        proof = self.votes.proof(body.height, self._config.quorum)\n",
        "        proof = self.votes.proof(body.height, self._config.weak_quorum)\n",
        (SIM_FAST_TIER,),
        "a checkpoint becomes stable (and the log below it is collected) with f+1 votes",
    ),
    # ------------------------------------------------------------------ double-sign guard
    Mutant(
        "double_sign_guard_forgets_after_restart",
        "consensus/signer.py",
        "            if not stale:\n                self.signed[record.key] = record\n",
        "            if False:\n                self.signed[record.key] = record\n",
        (SIM_RESTARTED_PRIMARY, SIM_FAST_TIER),
        "a restarted replica forgets what it signed and signs another block for the same slot",
    ),
    # ------------------------------------------------------------------ epochs (§12)
    Mutant(
        "epoch_rule_proposes_above_the_end",
        "consensus/normal_case.py",
        "        if self._ends_epoch(top, parent):\n            return\n",
        "",
        (SIM_EPOCH_TIER,),
        "the old epoch's primary proposes the child of the block that ended the epoch",
    ),
    Mutant(
        "epoch_rule_validates_above_the_end",
        "consensus/normal_case.py",
        "        if self._ends_epoch(height - 1, header.parent_digest):\n"
        "            # The epoch rule",
        "        if False:\n            # The epoch rule",
        (SIM_EPOCH_TIER,),
        "old-epoch replicas validate and vote on a child of the block that ended the epoch",
    ),
    Mutant(
        "epoch_domain_ignores_the_epoch",
        "consensus/config.py",
        "    if epoch == 0:\n        return chain_id\n",
        "    if True:\n        return chain_id\n",
        (SIM_EPOCH_TIER,),
        "every epoch signs under the chain id: old-epoch messages verify in the new one",
    ),
    Mutant(
        "committed_forgets_the_epoch_end",
        "consensus/committed.py",
        "        self.ends_epoch = ends_epoch\n",
        "        self.ends_epoch = False\n",
        (SIM_EPOCH_TIER,),
        "the replica never learns its epoch is over: it votes on above the switch block",
    ),
    Mutant(
        "sim_switch_keeps_the_old_set",
        "consensus/sim/world.py",
        "                validators=tuple(self.keys[g].public_key for g in sets.members),\n",
        "                validators=self.config.validators,\n",
        (SIM_EPOCH_TIER,),
        "the driver starts the next epoch's replica with the old validator set",
    ),
    Mutant(
        "sim_leaver_stops_at_once",
        "consensus/sim/driver.py",
        "        if self.role == REMOVED:\n            return []  # a removed validator has stopped",
        "        if self.role in (REMOVED, RETIRING):\n            return []  # a removed validator has stopped",
        (f"{_EPOCHS}::test_4_4_a_validator_voted_out_retires_so_the_old_set_can_finish_its_epoch",),
        "a validator voted out serves nothing from its switch on: the old set can stall",
    ),
    # ------------------------------------------------------------------ auditor properties
    Mutant(
        "auditor_quorum_f_plus_1",
        "consensus/sim/audit_sets.py",
        "    return (n + faulty_bound(n)) // 2 + 1\n",
        "    return faulty_bound(n) + 1\n",
        (
            f"{_AUDIT}::test_a_forged_commit_certificate_fed_directly_is_refused",
            f"{_CHECKER}::test_the_checker_flags_a_commit_without_a_valid_certificate",
        ),
        "the auditor's own quorum arithmetic accepts f+1 signers",
    ),
    Mutant(
        "checker_agreement_off",
        "consensus/sim/audit.py",
        "        if known != block.digest:\n",
        "        if False:\n",
        (
            SIM_ABOVE_F,
            f"{_CHECKER}::test_the_checker_flags_two_blocks_at_one_height",
            f"{_AUDIT}::test_agreement_is_flagged_when_the_quorum_is_too_small",
        ),
        "the auditor no longer compares honest replicas' blocks",
    ),
    Mutant(
        "checker_validity_off",
        "consensus/sim/audit.py",
        "                if request not in submitted:\n",
        "                if False:\n",
        (
            f"{_CHECKER}::test_the_checker_flags_a_request_nobody_submitted",
            f"{_AUDIT}::test_validity_is_flagged_when_execution_accepts_an_unsubmitted_request",
        ),
        "the auditor accepts committed requests nobody submitted",
    ),
    Mutant(
        "checker_certificate_off",
        "consensus/sim/audit.py",
        "        self, ep: AuditEpoch, view: int, height: int, digest: bytes, votes: Value\n"
        "    ) -> None:\n",
        "        self, ep: AuditEpoch, view: int, height: int, digest: bytes, votes: Value\n"
        "    ) -> None:\n        return\n",
        (
            f"{_CHECKER}::test_the_checker_flags_a_commit_without_a_valid_certificate",
            f"{_AUDIT}::test_certificates_are_flagged_when_catch_up_skips_signatures",
        ),
        "the auditor no longer verifies commit certificates",
    ),
    Mutant(
        "checker_carry_over_off",
        "consensus/sim/audit.py",
        "                if reissued.get(height) != self.decided[height]:\n",
        "                if False:\n",
        (f"{_AUDIT}::test_a_new_view_that_drops_a_committed_block_is_flagged",),
        "the auditor no longer checks that a new view carries committed blocks over",
    ),
    Mutant(
        "checker_justified_off",
        "consensus/sim/audit.py",
        "        if problem is not None:\n            view, height, digest = slot\n",
        "        if False:\n            view, height, digest = slot\n",
        (f"{_AUDIT}::test_unjustified_votes_are_flagged_when_signatures_are_not_checked",),
        "the auditor no longer checks that honest votes follow a valid proposal",
    ),
    Mutant(
        "checker_double_sign_off",
        "consensus/sim/audit.py",
        "        if self.signed.setdefault(key, content) != content:\n",
        "        if False:\n",
        (
            f"{_CHECKER}::test_the_checker_flags_an_honest_double_sign",
            f"{_AUDIT}::test_double_signing_by_an_honest_replica_is_flagged",
        ),
        "the auditor no longer compares what an honest replica signed",
    ),
    Mutant(
        "checker_epoch_vote_above_end_off",
        "consensus/sim/audit.py",
        "        if block == self.decided[ep.end]:\n",
        "        if False:\n",
        (f"{_EPOCHS}::test_an_old_epoch_vote_above_its_end_is_flagged",),
        "the auditor no longer looks for old-epoch votes on the switch block's child",
    ),
    Mutant(
        "checker_epoch_flag_off",
        "consensus/sim/audit.py",
        "        if self.with_epochs and bool(block.ends_epoch) != (ep.end == height):\n",
        "        if False:\n",
        (f"{_EPOCHS}::test_a_replica_unaware_of_the_epoch_end_is_flagged",),
        "the auditor no longer compares a replica's epoch ends with the set rules",
    ),
    Mutant(
        "checker_epoch_signer_off",
        "consensus/sim/audit.py",
        '        self.report(\n            "epoch",\n            f"node{index} signed a {message.kind} (as',
        '        (lambda *_: None)(\n            "epoch",\n            f"node{index} signed a {message.kind} (as',
        (f"{_EPOCHS}::test_a_removed_validator_that_keeps_voting_is_flagged",),
        "the auditor no longer checks that honest votes verify in an epoch of their sender",
    ),
    Mutant(
        "checker_liveness_off",
        "consensus/sim/audit.py",
        "        if behind:\n",
        "        if False:\n",
        (
            f"{_CHECKER}::test_a_run_where_nothing_is_delivered_is_a_liveness_violation",
            f"{_AUDIT}::test_liveness_is_flagged_when_a_request_is_never_proposed",
        ),
        "a run that never commits everything is not reported",
    ),
)
