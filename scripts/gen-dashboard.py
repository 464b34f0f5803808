#!/usr/bin/env python3
# Writes deploy/grafana/sundial-dashboard.json (run from the repository root). The dashboard
# queries only metrics Sundial exports (Sources/SundialObservability/MetricNames.swift); a test
# checks every name it uses against a live /metrics.
import json
panels=[]
def panel(title, exprs, unit="short", y=0, x=0, w=12, h=8, legend=None):
    pid=len(panels)+1
    targets=[]
    for i,(e,l) in enumerate(exprs):
        targets.append({"refId":chr(65+i),"expr":e,"legendFormat":l,"datasource":{"type":"prometheus","uid":"${datasource}"}})
    panels.append({"id":pid,"type":"timeseries","title":title,"datasource":{"type":"prometheus","uid":"${datasource}"},
        "gridPos":{"x":x,"y":y,"w":w,"h":h},"fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
        "options":{"legend":{"displayMode":"list","placement":"bottom"}},"targets":targets})
row=0
panel("Throughput (per second)",[("sum(rate(sundial_fires_total[1m]))","fired"),("sum(rate(sundial_dispatched_total[1m]))","dispatched"),("sum by (outcome) (rate(sundial_results_total[1m]))","results {{outcome}}"),("sum(rate(sundial_requests_total{method=\"Create\",code=\"200\"}[1m]))","created")],"ops",row,0)
panel("Fire lag p50 / p95 / p99 by tier and queue",[("histogram_quantile(0.5, sum by (le, tier, queue) (rate(sundial_fire_lag_seconds_bucket[5m])))","p50 {{tier}} {{queue}}"),("histogram_quantile(0.95, sum by (le, tier, queue) (rate(sundial_fire_lag_seconds_bucket[5m])))","p95 {{tier}} {{queue}}"),("histogram_quantile(0.99, sum by (le, tier, queue) (rate(sundial_fire_lag_seconds_bucket[5m])))","p99 {{tier}} {{queue}}")],"s",row,12)
row+=8
panel("Backlog",[("sum by (queue) (sundial_work_backlog)","work {{queue}}"),("max(sundial_fire_consumer_pending)","fire consumer pending"),("max(sundial_armed_runs)","armed runs (loaded into JetStream, waiting)"),("sum(sundial_deferred_fires)","deferred now")],"short",row,0)
panel("Retries and dead letters (per second)",[("sum(rate(sundial_results_total{outcome=\"retried\"}[5m]))","retried"),("sum(rate(sundial_results_total{outcome=\"dead_letter\"}[5m]))","dead-lettered"),("sum(rate(sundial_attempts_refunded_total[5m]))","attempts given back"),("sum(rate(sundial_retries_over_budget_total[5m]))","retries over budget"),("sum(rate(sundial_results_rejected_total[5m]))","results rejected")],"ops",row,12)
row+=8
panel("Planner shards and leases",[("max(sundial_planner_shards)","shards"),("sum by (instance) (sundial_planner_shards_held)","held by {{instance}}"),("sum(rate(sundial_planner_lease_acquisitions_total[5m])) * 60","lease acquisitions / min"),("sum(increase(sundial_planner_lease_takeovers_total[5m]))","shards taken over in 5 min"),("sum(rate(sundial_planner_rescued_total[5m]))","rescued / s"),("sum(rate(sundial_retention_deleted_timers_total[5m]))","retention: timers deleted / s")],"short",row,0)
panel("Fairness: capacity, throttling, governor",[("max by (queue) (sundial_queue_capacity_jobs_per_second)","capacity {{queue}}"),("max by (queue) (sundial_throttled_tenants)","throttled tenants {{queue}}"),("sum(rate(sundial_deferred_total[1m]))","deferrals / s"),("sum(sundial_governor_leader)","governor leaders"),("max(sundial_governor_plan_generation)","plan generation")],"short",row,12)
row+=8
panel("Circuit breakers",[("max by (queue) (sundial_breaker_state)","{{queue}} (0 closed, 1 half-open, 2 open, 3 paused)"),("max by (queue) (sundial_tenant_breakers_not_closed)","tenants held {{queue}}"),("max by (queue) (sundial_breaker_failure_ratio)","failure ratio {{queue}}"),("sum(rate(sundial_breaker_held_total[1m]))","held fires / s"),("sum(increase(sundial_breakers_opened_total[5m]))","opened in 5 min")],"short",row,0)
panel("Timers API latency and errors",[("histogram_quantile(0.99, sum by (le, method) (rate(sundial_request_duration_seconds_bucket[5m])))","p99 {{method}}"),("histogram_quantile(0.5, sum by (le, method) (rate(sundial_request_duration_seconds_bucket[5m])))","p50 {{method}}"),("sum by (code) (rate(sundial_requests_total{code!=\"200\"}[5m]))","errors {{code}} / s")],"s",row,12)
row+=8
panel("Dependencies",[("max(sundial_postgres_down)","Postgres down"),("sum(rate(sundial_postgres_pool_wait_seconds_total[5m])) / clamp_min(sum(rate(sundial_postgres_pool_waits_total[5m])), 1e-9)","mean wait of callers that waited for a Postgres connection (s)"),("sum(rate(sundial_postgres_pool_waits_total[5m]))","callers waiting for a connection / s"),("sum by (connection) (increase(sundial_nats_reconnects_total[5m]))","NATS reconnects {{connection}} / 5 min"),("min by (connection) (sundial_nats_connected)","NATS connected {{connection}}")],"short",row,0,24)
dash={"title":"Sundial","uid":"sundial-overview","schemaVersion":39,"version":1,"editable":True,"time":{"from":"now-1h","to":"now"},"refresh":"30s","tags":["sundial"],
 "templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus","label":"Prometheus"}]},
 "annotations":{"list":[]},"panels":panels}
open('deploy/grafana/sundial-dashboard.json','w').write(json.dumps(dash,indent=2)+"\n")
