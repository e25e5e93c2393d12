"""What people do: POST /v1/activities, and activities waiting for their person."""
