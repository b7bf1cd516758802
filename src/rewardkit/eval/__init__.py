"""Reward-model evaluation: pure metric functions, the `eval-rm` command and the HTML/Markdown report."""
