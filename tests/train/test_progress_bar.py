"""The training bar's loss before the first logged step says when it will come, not "loss nan"."""

from transformers import TrainerState, TrainingArguments

from bbuvl.train.callbacks import RichProgress, Throughput


def test_the_bar_says_when_the_loss_is_logged_until_it_is_and_then_shows_it(tmp_path):
    bar = RichProgress(Throughput(), enabled=False)
    args = TrainingArguments(output_dir=str(tmp_path), logging_steps=25, use_cpu=True, report_to=[])
    # Before: "loss nan" on every step of a run shorter than logging_steps, as if its losses were not finite.
    assert bar.loss_text(args.logging_steps) == "loss logged every 25 steps"
    state = TrainerState()
    state.global_step = 25
    bar.on_log(args, state, None, logs={"loss": 1.23456})
    assert bar.loss_text(args.logging_steps) == "loss 1.2346"
    bar.on_log(args, state, None, logs={"loss": float("nan")})  # a logged loss that is not finite is shown as such
    assert bar.loss_text(args.logging_steps) == "loss nan"


def test_the_bar_shows_a_logged_loss_at_once_not_one_window_later(tmp_path):
    # HF logs after on_step_end: the bar was refreshed before the log, so it showed the window before (a 4-step run
    # ended on step 3's loss)
    bar = RichProgress(Throughput(), enabled=True)
    args = TrainingArguments(output_dir=str(tmp_path), logging_steps=1, use_cpu=True, report_to=[])
    state = TrainerState()
    state.max_steps, state.global_step = 4, 0
    bar.on_train_begin(args, state, None)
    try:
        for step, loss in ((1, 4.0), (2, 3.0)):
            state.global_step = step
            bar.on_step_end(args, state, None)
            bar.on_log(args, state, None, logs={"loss": loss})
            assert bar.progress.tasks[0].fields["info"].startswith(f"loss {loss:.4f}")
    finally:
        bar.on_train_end(args, state, None)
