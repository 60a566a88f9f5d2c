"""Composition of the token lifecycle's parts for one worker (docs/design.md §12): the
keyring over the key store and the keys topic, the processor's sealing and token claims, the
token index's relay, retention, and the admin routes."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from services.config import Settings
from services.http.api import Api
from services.http.token_admin import TokenAdmin
from services.kafka.clients import KafkaAccess
from services.keys.kek import load_kek
from services.keys.keyring import Keyring
from services.keys.store import KeyStore
from services.log.journal import Keep
from services.metrics import Metrics
from services.stream.decision_store import DecisionStore
from services.stream.gate import Gate
from services.stream.ownership import Ownership
from services.stream.retention import RetentionScheduler
from services.stream.sealing import Sealing
from services.stream.token_claims import TokenClaims
from services.tokens.index_store import IndexStore
from services.tokens.records import index_key
from services.tokens.relay import TokenRelay


@dataclass
class TokenLifecycle:
    settings: Settings
    keyring: Keyring
    sealing: Sealing
    claims: TokenClaims
    relay: TokenRelay
    retention: RetentionScheduler
    index: IndexStore
    index_key: bytes

    def admin(self, api: Api) -> TokenAdmin:
        return TokenAdmin(api, self.index, self.index_key)


def build(
    settings: Settings,
    kafka: KafkaAccess,
    keys: KeyStore,
    index: IndexStore,
    decisions: DecisionStore,
    producer: AIOKafkaProducer,
    ownership: Ownership,
    metrics: Metrics,
    gates: tuple[Gate, Gate] | None = None,
    keep: Keep | None = None,
) -> TokenLifecycle:
    """`producer` sends commands and keys (not the processor's events: services/worker.py).
    In the embedded mode `gates` are the worker's writers' and its keyring's, closed while the
    broker is renewed, and `keep` keeps the keys and supersedes (services/log/rollover.py)."""
    s, partition_of = settings, ownership.partition_of
    writes, keyring_writes = gates or (Gate(), Gate())
    kek = load_kek(s)
    keyring = Keyring(
        keys,
        kek,
        producer,
        kafka,
        s.keys_topic,
        partition_of,
        keep=keep,
        gate=keyring_writes,
        metrics=metrics,
    )
    return TokenLifecycle(
        settings=s,
        keyring=keyring,
        sealing=Sealing(keyring),
        claims=TokenClaims(keyring, index_key(kek), partition_of),
        relay=TokenRelay(
            index,
            producer,
            s.commands_topic,
            partition_of,
            s.one_device_per_token,
            metrics,
            keep,
            writes,
        ),
        retention=RetentionScheduler(
            decisions,
            producer,
            s.commands_topic,
            s.retention_days,
            metrics,
            partition_of,
            ownership.local,
            gate=writes,
        ),
        index=index,
        index_key=index_key(kek),
    )
