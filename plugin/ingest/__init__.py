"""Ingest: reading a catalogue, the pipelined unit of work, the queued driver, verify."""
