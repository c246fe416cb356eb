"""Data: read, validate, convert, resize, choose teachers, synthesise."""
