"""Case chat: discuss a client's case with the model; history lives in the tenant schema."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any

from flask.views import MethodView
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from api.audit import audit
from api.auth import actor, any_member
from api.blueprint import Blueprint
from api.clients.operations import get_client
from api.common import ai_gate, mask_for_model
from api.consents.operations import recheck_before_save
from api.conversations.operations import get_conversation
from api.conversations.schemas import (
    ConversationCreateSchema,
    ConversationSchema,
    MessageCreateSchema,
    MessageSchema,
)
from api.db import commit_request, session
from api.examples import (
    CONVERSATION,
    CONVERSATION_CREATE,
    MESSAGE,
    MESSAGE_CREATE,
    MESSAGES,
)
from api.llm import gateway
from api.pagination import PageQuery, ReadAudit, fetch_page, page_query
from api.sse import stream_reply, wants_event_stream
from llm.gateway import Usage
from llm.prompts import CHAT_HISTORY, CHAT_MAX_TOKENS, chat_messages
from models import Conversation, ConversationMessage
from tenancy.actor import Actor

blp = Blueprint("conversations", __name__, url_prefix="/api/v1",
                description="Case chat with the model about one client.")


@functools.cache
def _conversation_pages() -> PageQuery:
    return page_query(
        select(Conversation).where(Conversation.client_id == bindparam("client_id")),
        order_by=(Conversation.created_at.desc(), Conversation.id))


@functools.cache
def _message_pages() -> PageQuery:
    return page_query(
        select(ConversationMessage)
        .where(ConversationMessage.conversation_id == bindparam("conversation_id")),
        order_by=(ConversationMessage.created_at, ConversationMessage.id))


def _save_turn(db: Session, a: Actor, client_id: uuid.UUID, consent_required: bool,
               conversation_id: uuid.UUID, question: str, answer: str,
               usage: Usage) -> ConversationMessage:
    recheck_before_save(db, client_id, consent_required)
    # Explicit times: now() is the transaction's start, the same for both turns.
    asked_at = dt.datetime.now(dt.UTC)
    asked = ConversationMessage(conversation_id=conversation_id, role="user", content=question,
                                author_id=a.user_id, created_at=asked_at)
    db.add(asked)
    answered = ConversationMessage(conversation_id=conversation_id, role="assistant",
                                   content=answer, prompt_tokens=usage.prompt_tokens,
                                   completion_tokens=usage.completion_tokens,
                                   created_at=asked_at + dt.timedelta(microseconds=1))
    db.add(answered)
    db.flush()
    db.refresh(answered)
    audit(db, a, "conversation.message", "conversation", [conversation_id])
    return answered


@blp.route("/clients/<uuid:client_id>/conversations")
class ClientConversations(MethodView):
    @any_member
    @blp.response(200, ConversationSchema(many=True), example=[CONVERSATION])
    @blp.paginate()
    @blp.errors("not_found")
    def get(self, client_id: uuid.UUID, pagination_parameters: Any) -> list[Any]:
        """List a client's conversations, newest first.

        404 when the caller may not see the client. The read is audited
        (`conversation.list`).
        """
        db = session()
        client = get_client(db, actor(), client_id)
        items, total = fetch_page(
            db, _conversation_pages(), params={"client_id": client.id},
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
            audit=ReadAudit(actor(), "conversation.list", "conversation"))
        pagination_parameters.item_count = total
        return items

    @any_member
    @blp.arguments(ConversationCreateSchema, required=False, example=CONVERSATION_CREATE)
    @blp.response(201, ConversationSchema, example=CONVERSATION)
    @blp.errors("not_found", "consent_required", "client_restricted")
    def post(self, _data: dict[str, Any], client_id: uuid.UUID) -> Any:
        """Start a conversation about a client.

        The body is an empty JSON object, or no body at all. Ask questions with
        `POST /conversations/{conversation_id}/messages`. 409 `consent_required` while
        the practice requires consent (`GET /admin/settings`) and the client has no
        current consent to AI assistance (`POST /clients/{client_id}/consents`); 409
        `client_restricted` for a restricted record.
        """
        db, p = session(), actor()
        client = get_client(db, p, client_id, write=True)
        ai_gate(db, client)
        conversation = Conversation(client_id=client.id, created_by=p.user_id)
        db.add(conversation)
        db.flush()
        db.refresh(conversation)
        audit(session(), actor(), "conversation.create", "conversation", [conversation.id])
        return conversation


@blp.route("/conversations/<uuid:conversation_id>/messages")
class ConversationMessages(MethodView):
    @any_member
    @blp.response(200, MessageSchema(many=True), example=MESSAGES)
    @blp.paginate()
    @blp.errors("not_found")
    def get(self, conversation_id: uuid.UUID, pagination_parameters: Any) -> list[Any]:
        """Show a conversation's messages, oldest first.

        The caller's questions (`role` `user`) and the model's replies (`assistant`, with
        their token `usage`). 404 when the caller may not see the conversation's client.
        """
        conversation, _client = get_conversation(session(), actor(), conversation_id)
        items, total = fetch_page(
            session(), _message_pages(), params={"conversation_id": conversation.id},
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size)
        pagination_parameters.item_count = total
        audit(session(), actor(), "conversation.read", "conversation", [conversation.id])
        return items

    @any_member
    @blp.arguments(MessageCreateSchema, example=MESSAGE_CREATE)
    @blp.response(201, MessageSchema, example=MESSAGE)
    @blp.event_stream("message_id")
    @blp.errors("not_found", "consent_required", "client_restricted")
    def post(self, data: dict[str, Any], conversation_id: uuid.UUID) -> Any:
        """Ask the model; returns its reply. Both turns are saved only on success.

        The model gets the recent history of the conversation and the question, with the
        client's name and contact details and other clients' names replaced by
        placeholders; the reply is restored before it is returned and saved. Metered
        against the practice's token budget (429 with `Retry-After`). With
        `Accept: text/event-stream` the reply streams as server-sent events.

        Refused before anything reaches the model or the budget: 409 `consent_required`
        while the practice requires consent (`GET /admin/settings`) and the client has no
        current consent to AI assistance (`POST /clients/{client_id}/consents`); 409
        `client_restricted` for a restricted record. A streamed request is refused the
        same way, with a JSON error instead of a stream. If the consent is withdrawn
        while the model writes, the conversation is deleted and nothing is saved (409
        `consent_required`, or a `save_failed` event in a stream).
        """
        db, a = session(), actor()
        conversation, client = get_conversation(db, a, conversation_id, write=True)
        consent_required = ai_gate(db, client)
        history = [(m.role, m.content) for m in db.scalars(
            select(ConversationMessage)
            .where(ConversationMessage.conversation_id == conversation.id)
            .order_by(ConversationMessage.created_at.desc(), ConversationMessage.id.desc())
            .limit(CHAT_HISTORY))][::-1]
        messages = chat_messages(history, data["content"])
        audit(db, a, "conversation.read", "conversation", [conversation.id])
        messages, pseudonymizer = mask_for_model(db, a, client, messages)
        commit_request(db)  # no transaction stays open while the model writes
        if not wants_event_stream():
            completion = gateway().complete(a, "case_chat", messages,
                                            max_tokens=CHAT_MAX_TOKENS,
                                            pseudonymizer=pseudonymizer,
                                            artifact=("conversation", conversation.id))
            answer = _save_turn(db, a, client.id, consent_required, conversation.id,
                                data["content"], completion.text, completion.usage)
            return answer
        stream = gateway().stream(a, "case_chat", messages, max_tokens=CHAT_MAX_TOKENS,
                                  pseudonymizer=pseudonymizer,
                                  artifact=("conversation", conversation.id))

        def save(stream_db: Session, done: Any) -> tuple[str, str]:
            answer = _save_turn(stream_db, a, client.id, consent_required, conversation.id,
                                data["content"], done.text, done.usage)
            return "message_id", str(answer.id)

        return stream_reply(stream, a, save)
