"""The matching rules: which providers may run an open job and which of them do
(`matcher.match`), and in words why a job still waits (`why.explain`). Pure functions over
`OpenJob` and `ProviderView` values, with no I/O: the relayer's loop, its API, the requester
SDK and the provider CLI all apply the same rules to the views they build. It imports only
marketplace.protocol.
"""
