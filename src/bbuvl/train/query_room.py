"""Training photos holding more objects than the detection head has queries: objects left without one each draw.

The head matches each object to a query of its own (model/matcher.py; under `loss.assignment: overlap` a query
learns one object too), so a photo of N objects under Q < N queries teaches the queries Q of them at each draw: the
other N - Q reach no query's box, objectness or caption term (only the two-stage proposals, one a token, still see
them), and the head never finds more than Q there. The run said nothing of it: a 300-object photo under 8 queries
trained with its start-up saying the head still learns every box.
"""

from __future__ import annotations

from bbuvl.train.dataset import SampleSource, locate

SHOWN = 5  # photos named in the note; the count covers them all


def queries_note(sources: list[SampleSource], num_queries: int, key: str = "data.train") -> str | None:
    """One warning naming (`file:line`) the photos of `sources` holding more objects than `num_queries`, and how many
    of their objects each draw leaves untaught to the head; None when every photo fits."""
    over = [s.student for s in sources if len(s.student.record.objects) > num_queries]
    if not over:
        return None
    counts = [len(r.record.objects) for r in over]
    where = locate(over[:SHOWN])
    named = "; ".join(f"{at}: {n} objects" for at, n in zip(where, counts))
    more = f" (and {len(over) - SHOWN} more)" if len(over) > SHOWN else ""
    left = sum(counts) - num_queries * len(over)
    return (f"{len(over)} photo(s) of {key} hold more objects than detection.num_queries ({num_queries}), and the head "
            f"gives each object a query of its own: at each draw of the whole photos {left} of their {sum(counts)} "
            "objects are matched to no query, so no box, objectness or caption term of a query learns them, and the "
            f"head finds at most {num_queries} a photo: {named}{more}. Raise detection.num_queries to at least "
            f"{max(counts)} (the most a photo holds)")
