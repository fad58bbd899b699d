"""The chain index: the market's events decoded (`events`), followed past reorgs by the
`listener` into a SQL database (`store`: checkpoint, event log, projections of jobs,
participants and providers, with the tables in `schema` and how events update them in
`folding`), and which database errors mean an outage (`outages`). The relayer, its API and every
provider agent keep one each and ask its `Store` named queries; SQL stays in this package. It
imports only marketplace.protocol and marketplace.matching (the store builds the matcher's
views).
"""
