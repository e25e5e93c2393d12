"""The touches' pure rules: send-time decisions, the batch snapshot they read, the email
message (no I/O anywhere in here)."""
