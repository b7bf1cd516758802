"""The labelling web app: server-rendered pages (no JavaScript build), a small script for keyboard shortcuts, and a
JSON API for scripted annotators.

Authentication: every request, to any path, needs a token: an annotator's or the admin's. It comes as `?token=` on
the link (the app then sets an HttpOnly, SameSite=Strict cookie and redirects to the same page without the token),
as that cookie, or as `Authorization: Bearer TOKEN`. Without a valid one every page and endpoint answers 401; a token
is compared in constant time (the admin's) or looked up by its hash (an annotator's).

Pages and endpoints
- annotators: `GET /` the next item (leased to them), `POST /judge` (form: item_id, choice, strength, reason, or
  skip), `GET /item/{id}` revise one's own judgment, `GET /mine` one's own judgments; JSON: `GET /api/next`,
  `POST /api/judgments` `{item_id, value, strength?, reason?}`, `POST /api/skip` `{item_id}`, `GET /api/mine`.
  An annotator can judge only an item leased to them or already judged by them, and sees and changes only their own
  judgments: another's item or judgment is answered 404, as if it did not exist.
- admin: `GET /progress` (counts per annotator, inter-annotator agreement) and `GET /api/progress`.
- both: `GET /static/label.js`, `/static/label.css`.

A pairs page takes the optional strength before or after A / B: after A or B without one, the script waits
`strength_wait` seconds with a visible countdown for 1-3 (`PairsTask.choices_html`, `static/label.js`). Prompts and
responses in Chinese, Japanese or Korean carry their `lang` (`rewardkit.label.render.language_of`).

Every response carries a strict Content-Security-Policy (scripts and styles only from this app's own files, no inline
script, no framing, forms post only here), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (the
token must not leak through a Referer) and `Cache-Control: no-store`. A cross-site form post is refused (403) besides
the SameSite cookie. Request bodies are bounded (413). What the data holds is rendered by `rewardkit.label.render`:
escaped first, then formatted.
"""

from __future__ import annotations

import hmac
import json
import math
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from rewardkit.label.agreement import agreement_report
from rewardkit.label.render import escape, render_conversation
from rewardkit.label.store import Annotator, Item, Judgment, Store
from rewardkit.label.tasks import STRENGTH_NAMES, JudgmentError, is_digits, task_named
from rewardkit.runs import json_ready
from rewardkit.serve.drain import DrainUnreadBody, drain_bound

COOKIE = "rewardkit_label"
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
STATIC = {"label.js": "text/javascript; charset=utf-8", "label.css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Who:
    """The caller: an annotator, or the admin (annotator None)."""

    annotator: Annotator | None

    @property
    def is_admin(self) -> bool:
        return self.annotator is None


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


# ------------------------------------------------------------------------------------------------ pages
def page(title: str, body: str, who: Who | None = None) -> str:
    nav = ""
    if who is not None and not who.is_admin:
        nav = (f'<nav><span class="who">{escape(who.annotator.name)}</span> <a href="/">Label</a> '
               f'<a href="/mine">My judgments</a></nav>')
    elif who is not None:
        nav = '<nav><span class="who">admin</span> <a href="/progress">Progress</a></nav>'
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{escape(title)} · rewardkit label</title>'
            f'<link rel="stylesheet" href="/static/label.css"><script src="/static/label.js" defer></script>'
            f'</head><body><header><h1>rewardkit label</h1>{nav}</header><main>{body}</main></body></html>')


def item_page(item: Item, scale: int, who: Who, current: Judgment | None, remaining: int, done: int,
              error: str | None = None, strength_wait: float = 0.0) -> str:
    """The form for one item. `strength_wait`: seconds the page waits after A or B for a strength (pairs)."""
    task = task_named(item.task)
    status = (f'<p class="status">Item {item.id} · you have judged {done} · {remaining} left for you'
              + (" · <strong>revising your judgment</strong>" if current else "") + "</p>")
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    reason = escape(current.reason) if current and current.reason else ""
    body = (f'{status}{problem}<section class="prompt"><h2>Prompt</h2>{render_conversation(item.prompt)}</section>'
            f'{task.responses_html(item.responses)}<form method="post" action="/judge" id="judge" '
            f'data-task="{item.task}" data-strength-wait="{round(strength_wait * 1000)}">'
            f'<input type="hidden" name="item_id" value="{item.id}">'
            f'<p class="question">{task.question}</p>{task.choices_html(item, scale, current, strength_wait)}'
            f'<label class="reason">Reason (optional, <kbd>R</kbd> to type, <kbd>Esc</kbd> to leave): '
            f'<textarea name="reason" rows="2" maxlength="2000">{reason}</textarea></label>'
            f'<div class="secondary"><button type="submit" name="skip" value="1" data-key="s">'
            f'<kbd>S</kbd> Skip</button></div></form>')
    return page(f"Item {item.id}", body, who)


def done_page(who: Who, done: int) -> str:
    return page("Done", f'<p class="status">You have judged {done} item(s). Nothing is left for you to judge '
                        f'now: thank you.</p>', who)


def mine_page(who: Who, judgments: list[Judgment]) -> str:
    rows = "".join(f'<tr><td><a href="/item/{j.item_id}">{j.item_id}</a></td><td>{escape(_shown_value(j))}</td>'
                   f'<td>{escape(j.reason or "")}</td></tr>' for j in reversed(judgments))
    return page("My judgments", f'<h2>My judgments ({len(judgments)})</h2><table><thead><tr><th>item</th>'
                                f'<th>judgment</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>', who)


def _shown_value(j: Judgment) -> str:
    if isinstance(j.value, list):
        return " > ".join(str(r + 1) for r in j.value)
    if j.strength:
        return f"{j.value} ({STRENGTH_NAMES[j.strength]})"
    return str(j.value)


def _number(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def progress_data(store: Store) -> dict:
    judgments = store.judgments()
    per_annotator: dict[str, dict] = {a.name: {"judgments": 0, "last": None} for a in store.annotators()}
    for j in judgments:
        entry = per_annotator.setdefault(j.annotator, {"judgments": 0, "last": None})
        entry["judgments"] += 1
        entry["last"] = max(entry["last"] or 0, j.updated)
    items = store.items()
    by_selection: dict[str, dict[str, int]] = {}
    judged_items = {j.item_id for j in judgments}
    for item in items:
        entry = by_selection.setdefault(item.selected_by, {"items": 0, "judged": 0})
        entry["items"] += 1
        entry["judged"] += item.id in judged_items
    return {"task": store.task, **store.counts(), "annotators": per_annotator, "selection": by_selection,
            "agreement": agreement_report(store.task, judgments) if store.task else None}


def progress_page(data: dict, who: Who) -> str:
    rows = "".join(f'<tr><td>{escape(name)}</td><td class="num">{e["judgments"]}</td></tr>'
                   for name, e in sorted(data["annotators"].items(), key=lambda kv: -kv[1]["judgments"]))
    agreement = data["agreement"] or {}
    kappas = "".join(f'<tr><td>{escape(pair)}</td><td class="num">{n}</td><td class="num">{_number(k)}</td></tr>'
                     for pair, (n, k) in agreement.get("cohen_kappa", {}).items())
    selection = "".join(f'<tr><td>{escape(how)}</td><td class="num">{e["items"]}</td><td class="num">{e["judged"]}'
                        f'</td></tr>' for how, e in sorted(data["selection"].items()))
    share = data["complete"] / data["items"] if data["items"] else 0.0
    body = (f'<h2>Progress: {escape(data["task"] or "no items")}</h2>'
            f'<p class="status"><strong>{data["complete"]}</strong> of {data["items"]} items complete '
            f'({100 * share:.0f}%) · {data["judgments"]} judgments</p>'
            f'<progress max="{max(data["items"], 1)}" value="{data["complete"]}"></progress>'
            f'<div class="tables"><section><h3>Judgments per annotator</h3><table><thead><tr><th>annotator</th>'
            f'<th>judgments</th></tr></thead><tbody id="annotators">{rows}</tbody></table></section>'
            f'<section><h3>Agreement</h3><table><tbody>'
            f'<tr><td>Krippendorff\'s α ({escape(agreement.get("level", ""))})</td><td class="num" id="alpha">'
            f'{_number(agreement.get("krippendorff_alpha"))}</td></tr>'
            f'<tr><td>Fleiss\' κ</td><td class="num">{_number(agreement.get("fleiss_kappa"))}</td></tr>'
            f'<tr><td>items judged twice or more</td><td class="num">{agreement.get("units", 0)}</td></tr>'
            f'</tbody></table><h3>Cohen\'s κ per pair</h3><table><thead><tr><th>annotators</th><th>shared items</th>'
            f'<th>κ</th></tr></thead><tbody>{kappas}</tbody></table></section>'
            f'<section><h3>Queue</h3><table><thead><tr><th>chosen by</th><th>items</th><th>judged</th></tr></thead>'
            f'<tbody>{selection}</tbody></table></section></div>')
    return page("Progress", body, who)


# ------------------------------------------------------------------------------------------------ the app
def create_app(store: Store, admin_token: str, lease_seconds: float = 1800.0,
               max_body_bytes: int = 64 * 1024, strength_wait: float = 2.0) -> FastAPI:
    app = FastAPI(title="rewardkit label", docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(Authentication(store, admin_token))
    routes = LabelRoutes(store, lease_seconds, max_body_bytes, strength_wait)
    for method, path, handler in [
        ("GET", "/", routes.index),
        ("GET", "/item/{item_id}", routes.revise),
        ("POST", "/judge", routes.judge),
        ("GET", "/mine", routes.mine),
        ("GET", "/progress", routes.progress),
        ("GET", "/static/{name}", routes.static_file),
        ("GET", "/api/next", routes.api_next),
        ("POST", "/api/judgments", routes.api_judge),
        ("POST", "/api/skip", routes.api_skip),
        ("GET", "/api/mine", routes.api_mine),
        ("GET", "/api/progress", routes.api_progress),
    ]:
        app.add_api_route(path, handler, methods=[method])
    app.add_exception_handler(HTTPProblem, _answer_problem)
    app.add_exception_handler(404, _answer_not_found)
    # outermost: answers sent before the body was read (401, 413) still reach clients that send the body first
    app.add_middleware(DrainUnreadBody, max_bytes=drain_bound(max_body_bytes))
    return app


class Authentication:
    """The middleware before any route (so an unknown path answers 401 too): who is calling, then the security
    headers."""

    def __init__(self, store: Store, admin_token: str):
        self.store, self.admin = store, admin_token.encode("utf-8")

    def identify(self, token: str | None) -> Who | None:
        if not token:
            return None
        if hmac.compare_digest(token.encode("utf-8"), self.admin):
            return Who(None)
        annotator = self.store.annotator_for_token(token)
        return Who(annotator) if annotator else None

    async def __call__(self, request: Request, call_next) -> Response:
        query_token = request.query_params.get("token")
        who = await run_in_threadpool(self.identify, query_token or _bearer_or_cookie_token(request))
        if who is None:
            response = _unauthorized(request)
        elif request.method == "POST" and _cross_site(request):
            response = _problem(request, 403, "cross-site requests are refused")
        elif query_token and request.method == "GET":
            response = _move_token_to_cookie(request, query_token)
        else:
            request.state.who = who
            try:
                response = await call_next(request)
            except HTTPProblem as exc:  # raised inside a route: answered here, with the headers below
                response = _problem(request, exc.status, exc.detail)
        response.headers.update(SECURITY_HEADERS)
        return response


def _bearer_or_cookie_token(request: Request) -> str | None:
    bearer = request.headers.get("authorization", "")
    return (bearer[7:].strip() if bearer.lower().startswith("bearer ") else None) or request.cookies.get(COOKIE)


def _move_token_to_cookie(request: Request, token: str) -> Response:
    """The same page again, the token now in a cookie: out of the address bar, and so out of history and
    screenshots."""
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    target = request.url.path + ("?" + urllib.parse.urlencode(rest) if rest else "")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
    return response


def annotator_of(request: Request) -> Who:
    who: Who = request.state.who
    if who.is_admin:
        raise HTTPProblem(403, "the admin link shows progress; labelling needs an annotator's link")
    return who


def admin_of(request: Request) -> Who:
    who: Who = request.state.who
    if not who.is_admin:
        raise HTTPProblem(403, "progress is for the admin link")
    return who


class LabelRoutes:
    """The routes' handlers, over one store and the app's settings. Work on the store blocks, so the async handlers
    (those that read a body) hand it to the thread pool; FastAPI runs the plain ones there itself."""

    def __init__(self, store: Store, lease_seconds: float, max_body_bytes: int, strength_wait: float):
        self.store, self.lease_seconds = store, lease_seconds
        self.max_body_bytes, self.strength_wait = max_body_bytes, strength_wait
        self.static = {name: resources.files("rewardkit.label").joinpath("static", name).read_bytes()
                       for name in STATIC}

    def allowed_item(self, who: Who, item_id: int) -> tuple[Item, Judgment | None]:
        """The item, if this annotator may judge it: leased to them, or judged by them (to revise); else 404."""
        item = self.store.item(item_id)
        current = self.store.judgment(who.annotator.id, item_id) if item else None
        if item is None or (current is None and not self.store.has_lease(who.annotator.id, item_id)):
            raise HTTPProblem(404, f"no item {item_id} for you")
        return item, current

    # -- pages ---------------------------------------------------------------------------------------------------------
    def item_response(self, who: Who, item: Item, current: Judgment | None, error: str | None = None,
                      status: int = 200) -> HTMLResponse:
        done, remaining = self.store.judged_by(who.annotator.id), self.store.remaining_for(who.annotator.id)
        return HTMLResponse(item_page(item, self.store.scale, who, current, remaining, done, error,
                                      self.strength_wait), status_code=status)

    def index(self, request: Request) -> HTMLResponse:
        who = annotator_of(request)
        item = self.store.next_item(who.annotator.id, self.lease_seconds)
        if item is None:
            return HTMLResponse(done_page(who, self.store.judged_by(who.annotator.id)))
        return self.item_response(who, item, None)

    def revise(self, request: Request, item_id: int) -> HTMLResponse:
        who = annotator_of(request)
        return self.item_response(who, *self.allowed_item(who, item_id))

    async def judge(self, request: Request) -> Response:
        who = annotator_of(request)
        form = await read_form(request, self.max_body_bytes)
        return await run_in_threadpool(self.save_form, who, _form_item_id(form), form)

    def save_form(self, who: Who, item_id: int, form: dict[str, str]) -> Response:
        """The next page after a judgment (or skip) sent by the form."""
        item, current = self.allowed_item(who, item_id)
        try:
            if form.get("skip"):
                self.store.skip(who.annotator.id, item_id)
            else:
                self.store.record(who.annotator.id, item_id, form_value(item, form.get("choice", "")),
                                  form.get("strength") or None, form.get("reason", ""))
        except JudgmentError as exc:  # the same item again, with what was wrong: never another one
            return self.item_response(who, item, current, str(exc), 422)
        return RedirectResponse("/", status_code=303)

    def mine(self, request: Request) -> HTMLResponse:
        who = annotator_of(request)
        return HTMLResponse(mine_page(who, self.store.judgments(who.annotator.id)))

    def progress(self, request: Request) -> HTMLResponse:
        return HTMLResponse(progress_page(progress_data(self.store), admin_of(request)))

    def static_file(self, name: str) -> Response:
        if name not in STATIC:
            raise HTTPProblem(404, "not found")
        return Response(self.static[name], media_type=STATIC[name])

    # -- JSON API ------------------------------------------------------------------------------------------------------
    def api_next(self, request: Request) -> JSONResponse:
        who = annotator_of(request)
        item = self.store.next_item(who.annotator.id, self.lease_seconds)
        return JSONResponse({"item": None if item is None else item_json(item, self.store.scale)})

    async def api_judge(self, request: Request) -> JSONResponse:
        who = annotator_of(request)
        body = await read_json_item(request, self.max_body_bytes)
        try:
            judgment, new = await run_in_threadpool(self.record_json, who, body)
        except JudgmentError as exc:
            raise HTTPProblem(422, str(exc))
        return JSONResponse({"judgment": judgment_json(judgment), "new": new}, status_code=201 if new else 200)

    def record_json(self, who: Who, body: dict) -> tuple[Judgment, bool]:
        self.allowed_item(who, body["item_id"])
        return self.store.record(who.annotator.id, body["item_id"], body.get("value"), body.get("strength"),
                                 body.get("reason"))

    async def api_skip(self, request: Request) -> JSONResponse:
        who = annotator_of(request)
        body = await read_json_item(request, self.max_body_bytes)
        await run_in_threadpool(self.skip, who, body["item_id"])
        return JSONResponse({"skipped": body["item_id"]})

    def skip(self, who: Who, item_id: int) -> None:
        self.allowed_item(who, item_id)
        self.store.skip(who.annotator.id, item_id)

    def api_mine(self, request: Request) -> JSONResponse:
        who = annotator_of(request)
        return JSONResponse({"judgments": [judgment_json(j) for j in self.store.judgments(who.annotator.id)]})

    def api_progress(self, request: Request) -> JSONResponse:
        admin_of(request)
        return JSONResponse(json_ready(progress_data(self.store)))


# ------------------------------------------------------------------------------------------------ request bodies
async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise HTTPProblem(413, f"request body over the limit of {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise HTTPProblem(413, f"request body over the limit of {max_bytes} bytes")
    return bytes(body)


async def read_form(request: Request, max_bytes: int) -> dict[str, str]:
    """The posted form's fields, each its first value."""
    form = urllib.parse.parse_qs((await read_body(request, max_bytes)).decode("utf-8", "replace"),
                                 keep_blank_values=True)
    return {name: values[0] for name, values in form.items()}


def _form_item_id(form: dict[str, str]) -> int:
    item_id = form.get("item_id", "")
    if not is_digits(item_id) or len(item_id) > 19:  # ids are 64-bit
        raise HTTPProblem(422, "item_id must be an item number")
    return int(item_id)


async def read_json_item(request: Request, max_bytes: int) -> dict:
    """A JSON API body: an object naming an item by its integer `item_id`."""
    try:
        body = json.loads(await read_body(request, max_bytes))
    except (ValueError, RecursionError) as exc:  # not UTF-8 or JSON; digits or nesting past limits
        raise HTTPProblem(400, f"request body is not valid JSON: {exc}")
    if not isinstance(body, dict) or isinstance(body.get("item_id"), bool) or not isinstance(
            body.get("item_id"), int):
        raise HTTPProblem(422, "the body must be an object with an integer item_id")
    return body


def form_value(item: Item, choice: str) -> Any:
    """A form's `choice` as the value to store, read as the item's task reads its form."""
    return task_named(item.task).form_value(choice.strip(), len(item.responses))


def item_json(item: Item, scale: int) -> dict:
    return {"id": item.id, "task": item.task, "prompt": item.prompt, "responses": item.responses,
            **task_named(item.task).item_fields(scale)}


def judgment_json(j: Judgment) -> dict:
    return {"item_id": j.item_id, "annotator": j.annotator, "value": j.value, "strength": j.strength,
            "reason": j.reason, "created": j.created, "updated": j.updated}


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _problem(request: Request, status: int, detail: str) -> Response:
    if _wants_html(request):
        return HTMLResponse(page("Error", f'<p class="error" role="alert">{escape(detail)}</p>'), status_code=status)
    return JSONResponse({"detail": detail}, status_code=status)


async def _answer_problem(request: Request, exc: HTTPProblem) -> Response:
    return _problem(request, exc.status, exc.detail)


async def _answer_not_found(request: Request, exc: Exception) -> Response:
    return _problem(request, 404, "not found")


def _unauthorized(request: Request) -> Response:
    response = _problem(request, 401, "a valid token is needed: open the link you were given (…/?token=…)")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _cross_site(request: Request) -> bool:
    """A state-changing request that a browser says comes from another site: Sec-Fetch-Site (sent by every current
    browser), else an Origin naming another host. Origin "null" proves nothing (browsers send it for form posts
    under `Referrer-Policy: no-referrer`); clients that are not browsers send neither."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urllib.parse.urlsplit(origin).netloc != request.headers.get("host")
    return False
