"""item-affinity (Personalize's aws-item-affinity): the user-personalization model, trained
the same way, whose output is user segments: batch segment jobs
(:mod:`recsys.inference.segments`) list, for each input item, the users it scores highest.

A separate name so a solution says what it is for; segment jobs accept any recipe's scores
(the campaign's solution), this one included.
"""

from __future__ import annotations

from recsys.recipes.user_personalization import UserPersonalization


class ItemAffinity(UserPersonalization):
    name = "item-affinity"
