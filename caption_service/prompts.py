"""Caption styles (the instruction sent with the image) and cleaning of what the model writes back."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    name: str
    instruction: str
    max_tokens: int  # default when the request gives none
    strip_boilerplate: bool  # drop "This image shows ..." openings
    tags: bool = False  # comma-separated tags instead of sentences


STYLES = {
    "detailed": Style(
        "detailed",
        "Describe this image in detail as a caption for training an image model. Write one paragraph of plain "
        "sentences about the main subject, its appearance, clothing, pose and expression, the setting, lighting, "
        "colours, camera angle and composition. Do not begin with 'This image shows' or similar phrases.",
        max_tokens=256,
        strip_boilerplate=True,
    ),
    "short": Style(
        "short",
        "Describe this image in one short sentence of at most 20 words. Do not begin with 'This image' or "
        "'The image'.",
        max_tokens=64,
        strip_boilerplate=True,
    ),
    "tags": Style(
        "tags",
        "List tags for this image, separated by commas: the subject, its attributes, clothing, setting, lighting "
        "and style. Write only the tags, lowercase, with no other text.",
        max_tokens=128,
        strip_boilerplate=True,
        tags=True,
    ),
    "custom": Style("custom", "", max_tokens=256, strip_boilerplate=False),
}

CHAT_TOKEN = re.compile(r"<\|[a-z_]+\|>|</?s>")
BOILERPLATE = re.compile(
    r"^\s*(?:(?:this|the)\s+(?:image|photo|photograph|picture|illustration|artwork|scene)\s+"
    r"(?:shows|depicts|features|captures|displays|presents|portrays|contains|is\s+of|is\s+a\s+picture\s+of)"
    r"|in\s+(?:this|the)\s+(?:image|photo|photograph|picture)\s*,?\s*(?:we\s+(?:can\s+)?see|there\s+is|there\s+are)?)"
    r"\s*:?\s*",
    re.IGNORECASE,
)
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
# What the chat handler reads as markup in the text it sends (it tokenizes with parse_special): mtmd's image marker
# (a second one fails the request: one image, two markers) and Qwen's chat tokens (a prompt would close its own turn).
PROMPT_MARKUP = re.compile(r"<__media__>|<\|[a-z_]+\|>")


class PromptError(ValueError):
    """The style or prompt is not usable; the message is one sentence for the user (422)."""


def instruction_for(style_name: str, prompt: str | None) -> tuple[Style, str]:
    """The style and the text sent with the image. `prompt` is the whole instruction for `custom` and
    extra instructions for the other styles."""
    style = STYLES.get(style_name)
    if style is None:
        raise PromptError(f"Unknown style {style_name!r}: use one of {', '.join(STYLES)}.")
    prompt = PROMPT_MARKUP.sub(" ", prompt or "").strip()
    if style.name == "custom":
        if not prompt:
            raise PromptError("The custom style needs a prompt: say what the caption should contain.")
        return style, prompt
    if prompt:
        return style, f"{style.instruction}\nAdditional instructions: {prompt}"
    return style, style.instruction


def clean_caption(text: str, style: Style, truncated: bool, trigger_word: str | None = None) -> str:
    """Strip chat tokens, boilerplate openings and stray whitespace; end a cut-off caption at its last
    full sentence (or tag); prepend the trigger word."""
    text = CHAT_TOKEN.sub(" ", text)
    if style.tags:
        text = _clean_tags(text, truncated)
    else:
        text = " ".join(text.split())
        if style.strip_boilerplate:
            stripped = BOILERPLATE.sub("", text, count=1)
            if stripped != text and stripped:
                text = stripped[0].upper() + stripped[1:]
        if truncated:
            ends = list(SENTENCE_END.finditer(text))
            if ends:
                text = text[: ends[-1].end()]
        text = text.strip()
    trigger = (trigger_word or "").strip()
    if trigger and not text.lower().startswith(trigger.lower()):
        text = f"{trigger}, {text}" if text else trigger
    return text


def _clean_tags(text: str, truncated: bool) -> str:
    text = BOILERPLATE.sub("", text, count=1)
    pieces = [" ".join(piece.split()).strip(" .;:-*") for piece in re.split(r"[,\n]", text)]
    if truncated and len(pieces) > 1:
        pieces = pieces[:-1]  # the last tag was cut mid-word
    seen, tags = set(), []
    for tag in pieces:
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            tags.append(tag)
    return ", ".join(tags)
