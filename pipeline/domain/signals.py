"""The behavioural signals that make up an intent score, and where each one counts.

Each signal has a two-letter code: the user state stores contributions under
the code to stay small; decisions and rules use the full name.
"""

from typing import Final

# Signal name (the event name) -> code stored in the state.
SIGNAL_CODES: Final[dict[str, str]] = {
    "page_view": "pg",
    "product_view": "pv",
    "spec_linger": "sl",
    "deep_scroll": "ds",
    "search": "se",
    "add_to_cart": "ac",
    "checkout_started": "co",
    "exit_intent": "ex",
    "button_click": "bc",
}
SIGNAL_NAMES: Final[dict[str, str]] = {code: name for name, code in SIGNAL_CODES.items()}

# Signals whose event names a product: they count for it and for its category.
PRODUCT_SIGNALS: Final = frozenset({"product_view", "spec_linger", "add_to_cart"})
# Signals about the page in front of the shopper: they count for the product
# viewed last, if that was recent (rules: scoring.focus_window_s).
FOCUS_SIGNALS: Final = frozenset({"deep_scroll", "exit_intent"})

# Codes the fold uses directly (events weighted by more than a flat weight).
SPEC_LINGER: Final = SIGNAL_CODES["spec_linger"]
DEEP_SCROLL: Final = SIGNAL_CODES["deep_scroll"]
ADD_TO_CART: Final = SIGNAL_CODES["add_to_cart"]
CHECKOUT_STARTED: Final = SIGNAL_CODES["checkout_started"]
EXIT_INTENT: Final = SIGNAL_CODES["exit_intent"]
