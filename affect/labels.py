"""Label sets and the mappings of each dataset into the canonical order.

The canonical order is AffectNet's, because it is the largest set with the
most classes; every other dataset maps into it by name.
"""

from __future__ import annotations

EXPRESSIONS: tuple[str, ...] = (
    "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt",
)

# AffectNet codes 8-10 (None, Uncertain, No-Face) are not expressions.
AFFECTNET_CODES: dict[int, str] = dict(enumerate(EXPRESSIONS))
AFFECTNET_NON_EXPRESSION_CODES = frozenset({8, 9, 10})
# AffectNet marks "no valid valence/arousal" with -2.
AFFECTNET_NO_VA = -2.0

# Original FER2013 CSV `emotion` codes.
FER2013_CSV_CODES: dict[int, str] = {
    0: "Anger", 1: "Disgust", 2: "Fear", 3: "Happy", 4: "Sad", 5: "Surprise", 6: "Neutral",
}

# Folder/file names used by FER2013 class folders, CK+ (CK+48) and most
# "one folder per class" datasets, lower-cased, mapped to canonical names.
NAME_ALIASES: dict[str, str] = {
    "neutral": "Neutral", "neutrality": "Neutral", "calm": "Neutral",
    "happy": "Happy", "happiness": "Happy", "joy": "Happy",
    "sad": "Sad", "sadness": "Sad",
    "surprise": "Surprise", "surprised": "Surprise",
    "fear": "Fear", "afraid": "Fear", "fearful": "Fear",
    "disgust": "Disgust", "disgusted": "Disgust",
    "anger": "Anger", "angry": "Anger",
    "contempt": "Contempt",
}

FER2013_CLASSES: tuple[str, ...] = tuple(FER2013_CSV_CODES[i] for i in range(7))
CKPLUS_CLASSES: tuple[str, ...] = ("Anger", "Contempt", "Disgust", "Fear", "Happy", "Sad", "Surprise")

# Coarse groups used by one of the reference experiments (CK+ with 3 groups).
EMOTION_GROUPS: dict[str, tuple[str, ...]] = {
    "negative": ("Sad", "Fear", "Disgust", "Anger", "Contempt"),
    "positive": ("Happy",),
    "surprise": ("Surprise",),
}

# Valence-arousal quadrant names (circumplex model), used by overlays and the
# dashboard. Keys: (valence >= 0, arousal >= 0).
QUADRANTS: dict[tuple[bool, bool], str] = {
    (True, True): "excited",
    (False, True): "stressed",
    (False, False): "depressed",
    (True, False): "relaxed",
}


def canonical_name(name: str) -> str:
    """Map a dataset's class name (any case) to the canonical label name.

    Raises ValueError naming the class when it has no canonical counterpart.
    """
    key = name.strip().lower()
    if key in NAME_ALIASES:
        return NAME_ALIASES[key]
    for label in EXPRESSIONS:
        if label.lower() == key:
            return label
    raise ValueError(f"unknown expression class {name!r}; known: {sorted(NAME_ALIASES)}")


def quadrant(valence: float, arousal: float) -> str:
    """Circumplex quadrant name of a valence/arousal point."""
    return QUADRANTS[(valence >= 0, arousal >= 0)]


def label_map(source: list[str] | tuple[str, ...], target: list[str] | tuple[str, ...]) -> dict[int, int]:
    """Indices of `source` labels in `target`, by canonical name; labels that
    `target` lacks are left out (e.g. Contempt when evaluating on FER2013)."""
    target_names = [canonical_name(t) if t.lower() in NAME_ALIASES else t for t in target]
    out = {}
    for i, s in enumerate(source):
        name = canonical_name(s) if s.lower() in NAME_ALIASES else s
        if name in target_names:
            out[i] = target_names.index(name)
    return out
