"""Names the operator shares with its CRD, RBAC and chart."""

GROUP = "newbank.io"
VERSION = "v1alpha1"
PLURAL = "cashbackplatforms"
KIND = "CashbackPlatform"

PEERING_NAME = "newbank-operator"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"

# Conditions on the CashbackPlatform's status.
BROKER_AVAILABLE = "BrokerAvailable"
QUEUES_HEALTHY = "QueuesHealthy"
SCALING_ACTIVE = "ScalingActive"

# Event reasons (kubectl describe / get events).
REASON_SCALED = "Scaled"
REASON_RECOVERED = "QueueRecovery"
REASON_RECOVERY_FAILED = "QueueRecoveryFailed"
REASON_BROKER_DOWN = "BrokerUnavailable"
REASON_BROKER_UP = "BrokerAvailable"
REASON_ERROR = "ReconcileError"
