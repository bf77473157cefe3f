"""The event store: events, verdict changes, thumbnails and evidence clips that survive restarts."""
