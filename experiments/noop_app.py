"""A no-op Ray Serve application: the floor of a serving path (experiments/serving_efficiency.py).

It reads the request body and answers a fixed V2 response of one row (what a one-instance
request gets back), so what it serves is what the path itself costs. Deployed from a Serve config
entry (``import_path: noop_app:app``) beside tuner's own application.
"""

from ray import serve
from starlette.responses import Response

NOOP_ANSWER = b'{"model_name":"noop","outputs":[{"name":"y","shape":[1,1],"datatype":"FP32","data":[0.0]}]}'
#: Serve config entry of the no-op, at /noop beside an application at /.
ENTRY = {"name": "noop", "route_prefix": "/noop", "import_path": "noop_app:app"}


@serve.deployment(max_ongoing_requests=64)
class Noop:
    async def __call__(self, request):
        await request.body()
        return Response(NOOP_ANSWER, media_type="application/json")


app = Noop.bind()
