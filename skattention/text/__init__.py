"""Text: raw documents to token-id sequences for attention models.

Ids ``0``/``1``/``2`` are reserved for padding, unknown words and the start
token (:data:`PAD_ID`, :data:`UNK_ID`, :data:`START_ID`); words start at 3.
"""

from ._vectorizer import (
    PAD_ID,
    PAD_TOKEN,
    START_ID,
    START_TOKEN,
    UNK_ID,
    UNK_TOKEN,
    TextSequenceVectorizer,
)

__all__ = ["TextSequenceVectorizer", "PAD_ID", "UNK_ID", "START_ID",
           "PAD_TOKEN", "UNK_TOKEN", "START_TOKEN"]
