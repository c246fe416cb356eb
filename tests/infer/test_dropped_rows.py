"""A row whose photo is given up on leaves a batched decode at its next step; the rows still wanted write, token for
token, what a batch that never held it writes (infer/dropped_rows.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

from bbuvl.infer.dropped_rows import Awaited


def after(polls: int) -> Awaited:
    """A photo given up on once it has been asked `polls` times whether it still is (one ask a decoding pass)."""
    asked = itertools.count(1)
    return Awaited(lambda: next(asked) > polls)


def rows_of_answers_begun(predictor, photos, begun: list[int]):
    """One prompt per photo, each followed by the first `begun[i]` tokens of an answer: rows of different lengths
    (left padding) that write different tokens; and each row's answer so far (text)."""
    from bbuvl.infer.modes.name import answer_prefix

    rows, texts = [], []
    for photo, k in zip(itertools.cycle(photos), begun):
        p = predictor.prepare(photo)
        ids, _ = answer_prefix(predictor, [3 * k, 2 * k, 40 + k, 60 + k])
        rows.append(predictor.student_sample(p).continued(ids[:k]))
        texts.append(predictor.tokenizer.decode(ids[:k]))
    return rows, texts


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("polls", [0, 3])
def test_rows_given_up_leave_the_batch_and_the_others_write_what_a_batch_without_them_writes(predictor, photos, polls,
                                                                                             constrained):
    # The dropped rows are the longest (the kept ones are padded further than in the batch without them)
    begun = [6, 14, 9, 12]
    rows, texts = rows_of_answers_begun(predictor, photos, begun)
    steps = 16
    kept, gone = [0, 2], [1, 3]

    def constraint(which):
        """The answer grammar for the rows `which`, each from where its answer stands (None unconstrained)."""
        if not constrained:
            return None
        frame = predictor.contract.answer_extent((224, 168))
        grammar = predictor.labels_constraint().grammar(frame)
        states = [grammar.run(texts[i].encode()) for i in which]
        return predictor.labels_constraint().processor([frame] * len(which), steps, states)

    alone_ids, alone_logp = predictor.greedy(predictor.collator([rows[i] for i in kept]).to(predictor.device),
                                             constraint(kept), steps)
    awaited = [None, after(polls), None, after(polls)]
    ids, logp = predictor.greedy(predictor.collator(rows).to(predictor.device), constraint(range(4)), steps, awaited)
    width = alone_ids.shape[1]
    assert len({tuple(r) for r in alone_ids.tolist()}) == 2  # the two rows write different answers
    assert torch.equal(ids[kept, :width], alone_ids)
    assert torch.allclose(logp[kept, :width], alone_logp, atol=1e-5)
    end = predictor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for row in gone:
        a = awaited[row]
        assert a.dropped
        # it wrote its own tokens until the pass it left, whose token ends its answer; no pass after it computed it
        assert ids[row, polls + 1].item() == end, ids[row]
        assert predictor.answer_end(ids[row]) == polls + 1
        assert a.passes_saved == ids.shape[1] - 1 - polls
    # The batch stops once the rows still wanted have ended, as the batch without them did
    assert ids.shape[1] == width


def test_a_row_never_given_up_is_decoded_as_if_nothing_were_asked(predictor, photos):
    rows, _ = rows_of_answers_begun(predictor, photos, [5, 8])
    batch = predictor.collator(rows).to(predictor.device)
    plain = predictor.greedy(batch, None, 10)
    awaited = [Awaited(lambda: False), Awaited(lambda: False)]
    asked = predictor.greedy(batch, None, 10, awaited)
    assert torch.equal(asked[0], plain[0]) and torch.allclose(asked[1], plain[1])
    assert not any(a.dropped or a.passes_saved for a in awaited)


def test_a_photo_given_up_in_generate_mode_gets_an_error_and_the_others_their_answers(predictor, photos):
    from dataclasses import replace

    from bbuvl.infer.modes.generate import answers

    options = predictor.options("generate", constrained=False, max_new_tokens=12)
    prepared = [predictor.encode(predictor.prepare(p)) for p in photos]
    alone = answers(predictor, prepared[:1], options)
    given_up = after(0)
    got = answers(predictor, [prepared[0], replace(prepared[1], awaited=given_up)], options)
    assert given_up.dropped and "given up on" in got[1].error
    assert (got[0].raw, got[0].error, got[0].completion_tokens) == (alone[0].raw, alone[0].error,
                                                                    alone[0].completion_tokens)


@pytest.mark.parametrize("mode, options", [("head", {"tiles": "2x2"}), ("generate", {"tiles": "2x2", "max_new_tokens": 8}),
                                           ("name", {})])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_given_up_in_a_mode_that_works_photo_by_photo_skips_the_rest_of_its_work(predictor, photos, mode, options):
    from dataclasses import replace

    opts = predictor.options(mode, **options)
    tiled = opts.plan() is not None
    prepared = [predictor.encode(predictor.prepare(p, keep_stored=tiled)) for p in photos]
    alone = predictor.predict_each(prepared[:1], mode, opts)
    kept = predictor.predict_each(prepared, mode, opts)
    given_up = after(0)
    got = predictor.predict_each([prepared[0], replace(prepared[1], awaited=given_up)], mode, opts)
    assert given_up.dropped and got[1].error and "given up on" in got[1].error
    # None of its regions (tiles), or of its boxes' names (name mode), was computed; when kept, they were
    assert got[1].completion_tokens == 0 and kept[1].completion_tokens + kept[1].prompt_tokens > 0
    if tiled:
        assert got[1].prompt_tokens == 0 and kept[1].prompt_tokens > 0
    else:
        assert not got[1].objects and kept[1].completion_tokens > 0
    assert [d.to_dict() for d in got[0].objects] == [d.to_dict() for d in alone[0].objects]
    assert (got[0].raw, got[0].error) == (alone[0].raw, alone[0].error)


def test_a_photo_given_up_is_not_computed_alone_when_its_batch_failed_and_the_others_are_retried(predictor, photos):
    from dataclasses import replace

    opts = predictor.options("generate", constrained=False, max_new_tokens=8)
    good, other = (predictor.encode(predictor.prepare(p)) for p in photos)
    # A photo whose prompt holds fewer image tokens than its pixels make fails any batch it is in (alone too)
    from bbuvl.data.families import IMAGE_TOKEN

    ids = good.sample.input_ids.clone()
    ids[(ids == predictor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)).nonzero()[0]] = predictor.tokenizer.pad_token_id
    broken = replace(good, sample=replace(good.sample, input_ids=ids))
    given_up = Awaited(lambda: True)
    results = predictor.predict_each([other, broken, replace(good, awaited=given_up)], "generate", opts)
    assert isinstance(results[1], (RuntimeError, ValueError))
    assert results[0].completion_tokens > 0  # its answer, retried alone (the tiny model writes no parseable one)
    # computed alone for nobody before, its whole answer
    assert given_up.dropped and "given up on" in results[2].error and results[2].completion_tokens == 0
