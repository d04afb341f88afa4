"""Typed FastAPI dependencies of the routers: the service state, the answering service,
the caller and its role.

    async def ask(req: AskRequest, request: Request, caller: Reader, answers: Answers) -> Answer: ...

``Reader`` is any valid API key, ``Admin`` an admin key (service/auth.py: authentication
and the per-key rate limit).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .answering import AnswerService
from .auth import Caller, require_admin, require_reader
from .state import ServiceState


async def get_state(request: Request) -> ServiceState:
    return request.app.state.vb


async def get_answers(state: Annotated[ServiceState, Depends(get_state)]) -> AnswerService:
    return state.answers


State = Annotated[ServiceState, Depends(get_state)]
Answers = Annotated[AnswerService, Depends(get_answers)]
Reader = Annotated[Caller, Depends(require_reader)]
Admin = Annotated[Caller, Depends(require_admin)]
