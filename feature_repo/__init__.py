"""Declarative Feast objects for EMS AI Hub. Module top levels only build Feast objects (no I/O):
`feast apply` imports every module here."""
