"""The API's endpoints, one `APIRouter` per area; `marketplace.api.app` includes them.

    artifacts    PUT / GET / HEAD /artifacts/{sha256}
    heartbeats   POST /heartbeats, GET /providers/liveness
    results      POST /results, GET /jobs/{job_id}/results
    health       GET /healthz
    metrics      GET /metrics
    jobs         GET /jobs, GET /jobs/{job_id}            (chain reads, see chain_routes)
    providers    GET /providers, GET /providers/{address} (chain reads)
    status       GET /status                              (chain reads)

Routes are plain functions: what they read comes from `marketplace.api.dependencies`, and what
goes wrong they raise, for the app's one handler (`marketplace.api.errors`) to answer.
"""
