"""Dispatch: nudges and VIP upgrades become WhatsApp or SMS messages, with receipts.

Pure parts (``policy``, ``records``) decide; ``dispatcher`` applies them to a
batch with the channels and the contact directory; ``agent`` wires it to Faust.
See docs/dispatch.md.
"""
