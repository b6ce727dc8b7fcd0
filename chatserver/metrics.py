"""Prometheus metrics for one hub process, served at /metrics (prometheus-client).

Each app gets its own registry, so several hubs in one test process never collide.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("chatserver_connections", "open WebSocket connections", ["role"], registry=r)
        self.messages_in = Counter("chatserver_messages_in_total", "messages accepted", ["role", "verdict"], registry=r)
        self.messages_out = Counter("chatserver_messages_out_total", "messages delivered", ["kind"], registry=r)
        self.alerts = Counter("chatserver_compliance_alerts_total", "compliance alerts raised", ["tier"], registry=r)
        self.conversations = Counter("chatserver_conversations_started_total", "conversations started", ["channel"], registry=r)
        self.queue_length = Gauge("chatserver_queue_length", "chats waiting for an advisor", ["group"], registry=r)
        self.bus_healthy = Gauge("chatserver_bus_healthy", "1 if the bus is connected", registry=r)
        self.db_healthy = Gauge("chatserver_database_healthy", "1 if the database answered the last check", registry=r)
        self.asyncio_tasks = Gauge("chatserver_asyncio_tasks", "asyncio tasks alive in this process", registry=r)
        self.commit_latency = Histogram("chatserver_ack_latency_seconds", "frame received to ack (includes commit)",
                                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0), registry=r)

    def record(self, name: str, labels: dict[str, Any]) -> None:
        if name == "message_in":
            self.messages_in.labels(labels["role"], labels["verdict"]).inc()
        elif name == "message_out":
            self.messages_out.labels(labels["kind"]).inc()
        elif name == "alert":
            self.alerts.labels(labels["tier"]).inc()
        elif name == "conversation_started":
            self.conversations.labels(labels["channel"]).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
