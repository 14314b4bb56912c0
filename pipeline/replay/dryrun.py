"""The replay's dispatcher: counts what would have been sent, sends nothing.

A replay's decisions live only in its own topics and warehouse rows; no channel
adapter is ever called and nothing reaches ``nudges``/``vip``, which the live
dispatcher consumes. This tally is what the summary reports as "would send".
"""

from collections import Counter

from schemas.messages import Nudge, NudgeCancellation, NudgeHeld, VipUpgrade


class DryRunDispatcher:
    def __init__(self) -> None:
        self.would_send: Counter[str] = Counter()
        self.withdrawn = 0

    def dispatch(self, decision: Nudge | NudgeHeld | NudgeCancellation | VipUpgrade) -> None:
        if isinstance(decision, NudgeCancellation):
            self.withdrawn += 1
            return
        if isinstance(decision, NudgeHeld):
            return  # the nudge itself follows when the hold ends
        if isinstance(decision, Nudge) and decision.status != "emit":
            return
        # The live dispatcher tries the first deliverable channel (WhatsApp, then SMS).
        channel = decision.channels[0] if decision.channels else "no_channel"
        self.would_send[channel] += 1
