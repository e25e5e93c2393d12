"""notifier: keeps people moving with timely touches, each sent exactly once."""
