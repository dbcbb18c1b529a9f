"""HTTP handlers, by resource. They authenticate, parse and hand over; nothing more."""
