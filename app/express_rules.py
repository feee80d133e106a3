"""The express lane's rules for what the user types: the trigger word, the kind of subject, and what
each kind means for captions and preview prompts."""

from __future__ import annotations

import re

KINDS = ("person", "object", "style", "other")
TRIGGER_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
MIN_IMAGES = 5
MANY_IMAGES = 500

# Words the base model already knows well: training one of them as a trigger changes every picture
# that word appears in (the LoRA "leaks"). Common English words plus what captions are made of.
COMMON_WORDS = frozenset("""
a an the and or but if of to in on at by for with from as is are was were be been being it its this that these
those he she they we you i me my your his her their our them him us who what which when where why how all any
some no not yes one two three four five six seven eight nine ten new old big small large little good bad best
great high low long short young man men woman women boy girl child children kid kids baby person people face
hand hands hair eye eyes head body friend family mother father dog dogs cat cats bird birds horse fish animal
animals car cars house home room door window table chair bed book water sky sun moon star tree trees flower
flowers grass forest mountain sea ocean beach river city street road building light dark black white red blue
green yellow orange purple pink brown gray grey gold silver color colour photo photograph picture image art
painting drawing sketch style portrait landscape anime cartoon realistic render model love life time day night
year world food game music movie film love king queen god lady lord sir mister miss boss hero star cute pretty
beautiful happy sad cool hot cold warm fire ice snow rain wind stone rock wood metal glass paper shirt dress
hat shoe shoes coat jacket bag cup phone computer robot toy toys ball logo text sign word name thing object
product item shape line pattern design character creature monster dragon angel demon girl guy lady sks ohwx
token trigger lora concept subject
""".split())


class ExpressInputError(ValueError):
    """Something the user typed cannot start an express run; the message says what to type instead."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def check_trigger(word) -> str:
    """The trigger word as given, or ExpressInputError with a sentence that says what to use instead."""
    if not isinstance(word, str) or not word.strip():
        raise ExpressInputError("trigger_word", "Type a trigger word: a rare made-up word such as 'mycat' or "
                                                "'zx_style' that the LoRA learns to mean your subject.")
    word = word.strip()
    if any(c.isspace() for c in word):
        joined = "_".join(word.split())
        raise ExpressInputError("trigger_word", f"The trigger word must be one word without spaces: try "
                                                f"'{joined}'.")
    if not TRIGGER_PATTERN.fullmatch(word):
        raise ExpressInputError("trigger_word", "Use only the letters A-Z (no accents or other scripts), digits, '_' "
                                                "and '-' in the trigger word.")
    if len(word) < 3 or len(word) > 40:
        raise ExpressInputError("trigger_word", "The trigger word must be 3 to 40 characters long.")
    lower = word.lower()
    if lower in COMMON_WORDS or lower.rstrip("s") in COMMON_WORDS:
        raise ExpressInputError("trigger_word", f"'{word}' is a common word the model already knows, so the LoRA "
                                                f"would change every picture of it: use a rare word such as "
                                                f"'zx{lower}' or '{lower}_xyz'.")
    return word


def check_kind(kind) -> str:
    if kind not in KINDS:
        raise ExpressInputError("kind", f"Pick what the images show: one of {', '.join(KINDS)}.")
    return kind


# preserve_class for the kinds whose captions name the subject by a class word (CAPTION_PROMPTS): the word
# the captions use, so the LoRA leaves every other person (or object) as the base model draws it
PRESERVED_CLASS = {"person": "person", "object": "object"}


def check_preserve(preserve: bool, kind: str) -> bool:
    """Whether to keep the class as the base model draws it (preserve_class); only a person or an object."""
    if not preserve:
        return False
    if kind not in PRESERVED_CLASS:
        raise ExpressInputError("preserve", "Keeping the others as the base model draws them works for a person or "
                                            "an object; a style or something else has no class word to keep.")
    return True


# Captions describe everything the trigger word should NOT absorb, so the LoRA learns the subject itself.
CAPTION_PROMPTS = {
    "person": "Write a caption for training an image model on this person. Describe their clothing, pose, "
              "expression, the setting, lighting and camera angle in one paragraph. Call them 'a person' and do "
              "not describe their face, hair or body in detail. Do not begin with 'This image shows'.",
    "object": "Write a caption for training an image model on the main object in this image. Describe where it "
              "is, the background, lighting and camera angle in one paragraph; call it 'the object' and do not "
              "describe its own shape, colours or markings in detail. Do not begin with 'This image shows'.",
    "style": "Write a caption for training an image model on the visual style of this image. Describe only what "
             "is shown (subjects, objects, setting, composition) in one paragraph, and never the style, medium, "
             "brushwork, colour palette or artist. Do not begin with 'This image shows'.",
}

# One preview prompt per kind that puts the subject somewhere the dataset never showed it.
NEW_CONTEXT = {
    "person": "[trigger], a person standing on a beach at sunset, photo",
    "object": "[trigger], the object on a wooden table in a sunlit kitchen, photo",
    "style": "a lighthouse on a cliff above a stormy sea, [trigger] style",
    "other": "[trigger] in a snowy forest at dawn",
}


def caption_options(kind: str) -> dict:
    """What to ask the caption service for: a prompt that leaves the subject to the trigger word."""
    if kind in CAPTION_PROMPTS:
        return {"mode": "skip", "style": "custom", "prompt": CAPTION_PROMPTS[kind], "max_tokens": 200}
    return {"mode": "skip", "style": "detailed", "prompt": "", "max_tokens": 200}


def sample_prompts(kind: str, captions: list[str], max_words: int = 28) -> list[str]:
    """Preview prompts: two of the dataset's own captions (does the LoRA reproduce it?) and one new scene
    (does it carry the subject somewhere new?). Each starts with [trigger]."""
    unique = sorted({c.strip() for c in captions if c and c.strip()}, key=len)
    chosen = []
    for caption in unique[:1] + unique[1:][-1:]:  # the shortest and the longest
        text = " ".join(caption.split()[:max_words]).rstrip(",.;")
        if text and text not in chosen:
            chosen.append(text)
    prompts = [f"[trigger], {text}" for text in chosen]
    prompts.append(NEW_CONTEXT[kind])
    return prompts
