"""A small app for subprocess tests: ``corofw run tests.pid_app:routes``."""

import os

from corofw import Router, sleep

routes = Router()


@routes.get("/pid")
def pid(request):
    return str(os.getpid())


@routes.get("/sleep/{seconds:float}")
def nap(request, seconds):
    yield from sleep(seconds)
    return f"slept {seconds}\n"


not_a_router = {"handle": "nope"}
