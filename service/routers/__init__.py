"""The API's routes, one router per resource; ``service.app.create_app`` includes them."""

from . import answers, documents, feedback, health, openai

# in this order in the OpenAPI document
ROUTERS = (health.router, answers.router, openai.router, documents.router, feedback.router)

__all__ = ["ROUTERS"]
