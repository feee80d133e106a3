"""One caption: image bytes and options in, clean caption out (used by the HTTP view and the benchmark)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from caption_service.images import prepare
from caption_service.llm import MAX_NEW_TOKENS
from caption_service.model_manager import CaptionTimeout, ModelManager
from caption_service.prompts import PromptError, clean_caption, instruction_for

# Greedy decoding with a light repeat penalty: the same image gives the same caption, and the model
# does not loop. The benchmark's direct calls use the same values.
GENERATION = {"temperature": 0.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.05, "seed": 0}


@dataclass(frozen=True)
class CaptionRequest:
    image: bytes
    style: str = "detailed"
    prompt: str | None = None
    trigger_word: str | None = None
    max_tokens: int | None = None


def messages_for(data_uri: str, instruction: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri}},
                                         {"type": "text", "text": instruction}]}]


def generate(llm, data_uri: str, instruction: str, max_tokens: int, deadline: float) -> tuple[str, str, int]:
    """(text, finish_reason, tokens). Streams so a caption running past the deadline stops at once."""
    stream = llm.create_chat_completion(messages=messages_for(data_uri, instruction), max_tokens=max_tokens,
                                        stream=True, **GENERATION)
    parts, finish, tokens = [], "length", 0
    try:
        for chunk in stream:
            choice = chunk["choices"][0]
            piece = choice["delta"].get("content")
            if piece:
                parts.append(piece)
                tokens += 1  # one streamed piece per generated token (multi-byte characters aside)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
            if time.monotonic() > deadline:
                raise CaptionTimeout("The caption took longer than the time limit (CAPTION_TIMEOUT_S); "
                                     "try a smaller max_tokens.")
    finally:
        stream.close()
    return "".join(parts), finish, tokens


def caption(manager: ModelManager, request: CaptionRequest) -> dict:
    """Validate, normalise the image, run the model under its lock, clean the text."""
    started = time.monotonic()
    settings = manager.settings
    deadline = started + settings.caption_timeout_s
    style, instruction = instruction_for(request.style, request.prompt)
    max_tokens = request.max_tokens or style.max_tokens
    manager.check_queue()
    data_uri = manager.decode(lambda: prepare(request.image, settings.max_image_pixels, settings.caption_max_pixels),
                              deadline)
    try:
        text, finish, tokens = manager.run(lambda llm, until: generate(llm, data_uri, instruction, max_tokens, until),
                                           deadline)
    except ValueError as exc:  # llama.cpp's own check, before any token is generated
        if "n_ctx" not in str(exc) and "context window" not in str(exc):
            raise
        raise PromptError("The prompt is too long for the model's context: shorten it (or the style's "
                          "instructions) and try again.") from None
    cleaned = clean_caption(text, style, truncated=finish == "length", trigger_word=request.trigger_word)
    return {"caption": cleaned, "seconds": round(time.monotonic() - started, 3), "tokens": tokens,
            "style": style.name, "finish_reason": finish}


def check_max_tokens(value) -> int | None:
    """None, or a whole number from 1 to MAX_NEW_TOKENS; ValueError with a sentence otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("max_tokens must be a whole number.")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400 in JSON is infinity
        raise ValueError("max_tokens must be a whole number.") from None
    if isinstance(value, float) and value != number:
        raise ValueError("max_tokens must be a whole number.")
    if not 1 <= number <= MAX_NEW_TOKENS:
        raise ValueError(f"max_tokens must be between 1 and {MAX_NEW_TOKENS}.")
    return number
