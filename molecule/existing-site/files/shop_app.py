"""The server's own app (not the project's): a Starlette API with a stream of its own.

A different shape from the reference app: plain Starlette under Uvicorn (Debian's
packages, no Gunicorn), a JSON API, and a text/event-stream at /api/stream.
"""

import asyncio
import json

from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


async def health(request):
    return JSONResponse({"app": "shop", "ok": True})


async def items(request):
    return JSONResponse([{"id": 1, "name": "tea"}, {"id": 2, "name": "cups"}])


async def stream(request):
    async def events():
        for number in range(3):
            yield f"data: {json.dumps({'n': number})}\n\n"
            await asyncio.sleep(0.1)

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/api/health", health),
        Route("/api/items", items),
        Route("/api/stream", stream),
    ]
)
