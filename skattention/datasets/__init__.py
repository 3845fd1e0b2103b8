"""Small real data sets shipped with skattention (no download needed).

* :func:`load_sms_spam`: SMS Spam Collection, 5,574 messages, ham or spam.
* :func:`load_sst2`: SST-2 binary sentiment, GLUE train/dev and the labelled
  SST test set.
"""

from ._base import load_sms_spam, load_sst2

__all__ = ["load_sms_spam", "load_sst2"]
