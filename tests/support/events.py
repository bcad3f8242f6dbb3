"""One example of each event the service publishes (CONTRACT.md shapes), for the tail's tests
without a broker and with one."""

from __future__ import annotations

DRIFT = {"eventId": "ev-1", "jobRunId": "run-7", "tenantId": "acme", "modelId": "risk-scoring",
         "modelVersion": "3", "segment": None, "feature": "amount", "metric": "psi",
         "value": 0.31, "threshold": 0.25, "delta": 0.06, "severity": "critical",
         "sampleSize": 5400, "baselineSampleSize": 20000, "windowStart": "2026-11-22T06:00:00Z",
         "windowEnd": "2026-11-29T06:00:00Z", "detectedAt": "2026-11-29T06:00:02Z"}
DEGRADED = {"eventId": "ev-2", "jobRunId": "run-7", "tenantId": "acme", "modelId": "risk-scoring",
            "modelVersion": "3", "segment": "emea", "metric": "brier", "value": 0.19,
            "baseline": 0.12, "threshold": 0.132, "delta": 0.058, "sampleSize": 812,
            "windowStart": "2026-11-22T06:00:00Z", "windowEnd": "2026-11-29T06:00:00Z",
            "detectedAt": "2026-11-29T06:00:02.500+00:00"}
SNAPSHOT = {"jobRunId": "run-7", "tenantId": "acme", "modelId": "risk-scoring", "modelVersion": "3",
            "segment": None, "windowStart": "2026-11-22T06:00:00Z", "windowEnd": "2026-11-29T06:00:00Z",
            "sampleSize": 5400,
            "features": {
                "amount": {"metric": "psi", "value": 0.31, "status": "drift", "severity": "critical"},
                "industry": {"metric": "psi", "value": 0.12, "status": "drift", "severity": "warning"},
                "age_days": {"metric": "psi", "value": 0.01, "status": "ok", "severity": None},
                "region": {"metric": "psi", "value": None, "status": "insufficient_data", "severity": None}},
            "performance": {"brier": {"value": 0.19, "status": "degraded"},
                            "mae": {"value": 0.33, "status": "degraded"}}}
COMPLETED = {"job": "model-monitoring", "jobRunId": "run-7", "tenants": ["acme"], "driftChecked": 40,
             "performanceChecked": 4, "driftDetected": 3, "performanceDegraded": 1,
             "durationMs": 812, "completedAt": "2026-11-29T06:00:03Z"}
FAILED = {"job": "model-monitoring", "jobRunId": "run-8", "error": "deadline passed\nafter 900 s",
          "failedAt": 1795932003000}
