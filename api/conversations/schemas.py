from __future__ import annotations

import marshmallow as ma
from marshmallow import validate


class ConversationSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    client_id = ma.fields.UUID(dump_only=True)
    created_by = ma.fields.String(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)


class ConversationCreateSchema(ma.Schema):
    """No fields yet: a conversation belongs to the client in the path."""


class MessageCreateSchema(ma.Schema):
    content = ma.fields.String(required=True, validate=validate.Length(min=1, max=20_000))


class MessageSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    conversation_id = ma.fields.UUID(dump_only=True)
    role = ma.fields.String(dump_only=True)
    content = ma.fields.String(dump_only=True)
    author_id = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "The user who asked; null for the model's replies"})
    usage = ma.fields.Method("_usage", dump_only=True, metadata={
        "type": ["object", "null"],
        "description": "Tokens of a model reply (prompt_tokens, completion_tokens, "
                       "total_tokens); null for the caller's questions",
        "properties": {name: {"type": "integer"}
                       for name in ("prompt_tokens", "completion_tokens", "total_tokens")}})
    created_at = ma.fields.DateTime(dump_only=True)

    def _usage(self, message: object) -> dict[str, int] | None:
        prompt = getattr(message, "prompt_tokens", None)
        completion = getattr(message, "completion_tokens", None)
        if prompt is None or completion is None:
            return None
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}
