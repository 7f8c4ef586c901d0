"""Typed SQLAlchemy models.

Two metadata collections, because the two kinds of table live in different places:

- ``SharedBase`` tables live in the ``public`` schema (tenant registry, memberships,
  invitations, migration status) and are migrated by ``migrations/``.
- ``TenantBase`` tables carry no schema; they live in every tenant schema ``t_<hex>``
  and are reached through the connection's ``search_path``. ``tenant_migrations/``
  migrates them once per tenant schema.

This package imports nothing else of ours.
"""

from models.audit_event import AuditEvent
from models.base import SharedBase, TenantBase
from models.billing_period import BillingPeriod
from models.client import Client, ClientIdentityKey
from models.consent import ClientConsent
from models.conversation import Conversation, ConversationMessage
from models.data_export import DataExport
from models.erasure import ErasureTombstone
from models.invitation import Invitation
from models.llm_budget import LlmBudget
from models.llm_usage import LlmUsage
from models.membership import Membership
from models.note import Note
from models.note_amendment import NoteAmendment
from models.practice_settings import PracticeSettings
from models.security_event import SecurityEvent
from models.tenant import Tenant
from models.tenant_migration import TenantMigration
from models.therapy_session import TherapySession

__all__ = [
    "AuditEvent",
    "BillingPeriod",
    "Client",
    "ClientConsent",
    "ClientIdentityKey",
    "Conversation",
    "ConversationMessage",
    "DataExport",
    "ErasureTombstone",
    "Invitation",
    "LlmBudget",
    "LlmUsage",
    "Membership",
    "Note",
    "NoteAmendment",
    "PracticeSettings",
    "SecurityEvent",
    "SharedBase",
    "Tenant",
    "TenantBase",
    "TenantMigration",
    "TherapySession",
]
