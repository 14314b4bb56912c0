"""A variant of a nudge kind's message (``dispatch.templates.<kind>.variants`` in the
rules): what the rules file, the dispatcher and the API's drafts all read, so it lives
with the shared names rather than in either side.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from schemas.templates import placeholders_of

VariantName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
TemplateName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,512}$")]


class TemplateVariant(BaseModel):
    """One variant of a kind's message: what differs from the kind's own wording.

    The free-form texts (``schemas.templates.Template``'s title, body, button and SMS,
    with the same placeholders) and/or the approved WhatsApp template sent outside the
    service window (``whatsapp_template``, same parameters as the kind's). What is not
    set is the kind's own. A bandit chooses among a kind's variants (schemas/bandit.py).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: VariantName
    whatsapp_template: TemplateName | None = None
    title: str | None = None
    body: str | None = None
    button: str | None = None
    sms: str | None = None

    @model_validator(mode="after")
    def _known_placeholders(self) -> "TemplateVariant":
        for text in self.texts().values():
            placeholders_of(text)  # raises ValueError naming the unknown ones
        return self

    def texts(self) -> dict[str, str]:
        """The free-form texts this variant sets (``Template`` field → text)."""
        texts = {"title": self.title, "body": self.body, "button": self.button, "sms": self.sms}
        return {field: text for field, text in texts.items() if text is not None}
