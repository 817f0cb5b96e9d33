"""The model families: each package holds one family's catalog schema (its entries, input models and prices)
beside the backends that run them, so that a family is read, changed or removed in one place.

Families are independent: no module of one family imports another family. What several of them need lives
below them, never in a family: `genmill.models.schema` (the field types and price helpers catalog schemas share)
and the shared backend infrastructure in `genmill.backends` (the `Backend` interface, the toolkit of input and
output helpers, video I/O, diffusers loading, LoRAs, model processes). `genmill.catalog` assembles every family's
entries and `genmill.backends.registry` builds every family's backends; they are the only modules that import
the families.
"""
