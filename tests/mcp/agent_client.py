"""An agent's view of connector-runtime's MCP server, through the official Python MCP SDK.

Run by tests/mcp_python.rs, over stdio (the test passes the command that starts
`connector-runtime mcp`) or over streamable HTTP (the test passes the endpoint and a bearer
token). Each step asserts; the last line printed is a JSON summary the Rust test checks again.

    agent_client.py stdio --command BIN --config FILE
    agent_client.py http --base URL --token TOKEN

Connections the test sets up: `stripe-sandbox` (the default tool policy: read-only tools only),
`agents` (create_* allowed, confirm_payment_intent allowed as destructive), and, over HTTP,
`everything` (every tool allowed) for the whole-spec checks.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import uuid

import jsonschema
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def check(condition, message):
    if not condition:
        raise AssertionError(message)


@contextlib.asynccontextmanager
async def session(args, connection):
    """An initialized MCP session with the tools of `connection`."""
    if args.transport == "stdio":
        params = StdioServerParameters(
            command=args.command,
            args=["mcp", "--config", args.config, "--connection", connection],
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                yield s
    else:
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {args.token}"})
        async with client:
            async with streamable_http_client(f"{args.base}/{connection}", http_client=client) as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    yield s


async def call_ok(s, name, arguments):
    result = await s.call_tool(name, arguments)
    text = result.content[0].text if result.content else ""
    check(not result.is_error, f"{name} failed: {text}")
    # The SDK checks the structured content against the tool's declared output schema.
    await s.validate_tool_result(name, result)
    return result.structured_content


async def default_policy(args):
    """Under the default policy an agent sees only read-only tools and is refused a delete."""
    async with session(args, "stripe-sandbox") as s:
        tools = (await s.list_tools()).tools
        names = {t.name for t in tools}
        check("list_customers" in names and "get_payment_intent" in names, "read-only tools listed")
        check(all(t.annotations.read_only_hint for t in tools), "only read-only tools under the default policy")
        check("delete_customer" not in names, "delete_customer hidden under the default policy")
        refused = await s.call_tool("delete_customer", {"Id": "cus_anything", "request_id": str(uuid.uuid4())})
        text = refused.content[0].text
        check(refused.is_error, "delete_customer refused")
        check(text.startswith("TOOL_NOT_ALLOWED:"), f"refusal reason: {text}")
        check("tool_policy.allow_destructive" in text, f"refusal names the setting: {text}")
        listed = await call_ok(s, "list_customers", {"page_size": 5})
        return {"default_tools": len(tools), "delete_refusal": text, "listed": len(listed["entities"])}


async def agent_payment(args):
    """With create_* and confirm_payment_intent enabled, an agent takes a card payment."""
    async with session(args, "agents") as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        for name in ("create_customer", "create_payment_intent", "confirm_payment_intent"):
            check(name in tools, f"{name} listed once enabled")
        check("delete_customer" not in tools, "delete_customer still hidden")
        confirm = tools["confirm_payment_intent"].annotations
        check(confirm.destructive_hint and confirm.idempotent_hint and confirm.open_world_hint, "confirm hints")
        check("request_id" in tools["create_customer"].input_schema["required"], "creates require a request_id")

        email = f"agent-{uuid.uuid4().hex[:8]}@example.com"
        customer = await call_ok(
            s, "create_customer", {"Email": email, "Name": "Agent Customer", "request_id": str(uuid.uuid4())}
        )
        check(customer["Id"].startswith("cus_") and customer["Email"] == email, f"customer: {customer}")
        intent_request = str(uuid.uuid4())
        intent_args = {
            "Amount": 2000,
            "Currency": "usd",
            "Customer": customer["Id"],
            "PaymentMethod": "pm_card_visa",
            "PaymentMethodTypes": ["card"],
            "request_id": intent_request,
        }
        intent = await call_ok(s, "create_payment_intent", intent_args)
        check(intent["Status"] == "requires_confirmation", f"intent: {intent}")
        replay = await call_ok(s, "create_payment_intent", intent_args)
        check(replay["Id"] == intent["Id"], "the same request_id replays the first create")
        confirmed = await call_ok(
            s, "confirm_payment_intent", {"PaymentIntentId": intent["Id"], "request_id": str(uuid.uuid4())}
        )
        check(confirmed["status"] == "succeeded", f"confirmed: {confirmed}")
        fetched = await call_ok(s, "get_payment_intent", {"Id": intent["Id"]})
        check(fetched["Status"] == "succeeded" and fetched["AmountReceived"] == 2000, f"fetched: {fetched}")

        # A second confirmation is Stripe's error, with Stripe's message and the reason.
        again = await s.call_tool(
            "confirm_payment_intent", {"PaymentIntentId": intent["Id"], "request_id": str(uuid.uuid4())}
        )
        text = again.content[0].text
        check(again.is_error and text.startswith("STRIPE_INVALID_STATE: Stripe: "), f"second confirm: {text}")
        check(again.structured_content["error"]["metadata"]["stripe_code"] == "payment_intent_unexpected_state",
              f"error detail: {again.structured_content}")
        # Arguments the schema does not know are refused before any upstream call.
        bad = await s.call_tool("create_customer", {"Emial": email, "request_id": str(uuid.uuid4())})
        check(bad.is_error and bad.content[0].text.startswith("INVALID_ARGUMENT:"), f"bad argument: {bad.content}")
        return {
            "customer": customer["Id"],
            "payment_intent": intent["Id"],
            "status": confirmed["status"],
            "second_confirm": text,
        }


def read_only_arguments(tool, customer):
    """Arguments a read-only tool can run with: a real customer where one fits, else made-up ids."""
    schema = tool.input_schema
    required = schema.get("required", [])
    arguments = {}
    if tool.name.startswith("list_"):
        arguments["page_size"] = 3
        if "conditions" in required:
            # The description ends with "Required: Customer = '<id>' AND Scope.type = 'account'."
            needed = schema["properties"]["conditions"]["description"].rsplit("Required: ", 1)[1].rstrip(".")
            clauses = []
            for part in needed.split(" AND "):
                field, example = part.split(" = ")
                if example == "'<id>'":
                    example = f"'{customer}'" if field == "Customer" else "'id_missing'"
                clauses.append(f"{field} = {example}")
            arguments["conditions"] = " AND ".join(clauses)
        return arguments
    for key in required:
        arguments[key] = customer if key == "Customer" or tool.name == "get_customer" else "id_missing"
    return arguments


async def whole_spec(args):
    """Every tool's input schema is valid JSON Schema; every read-only tool runs without a server
    error, and what it returns matches its output schema."""
    async with session(args, "everything") as s:
        tools = (await s.list_tools()).tools
        for tool in tools:
            for schema in (tool.input_schema, tool.output_schema):
                jsonschema.validators.validator_for(schema).check_schema(schema)
        customer = await call_ok(
            s, "create_customer", {"Email": "sweep@example.com", "request_id": str(uuid.uuid4())}
        )
        outcomes = {}
        server_errors = []
        for tool in tools:
            if not tool.annotations.read_only_hint:
                continue
            result = await s.call_tool(tool.name, read_only_arguments(tool, customer["Id"]))
            if result.is_error:
                error = result.structured_content["error"]
                outcomes[error["reason"]] = outcomes.get(error["reason"], 0) + 1
                if error["code"] in ("Internal", "Unknown", "Unimplemented", "Unavailable", "DataLoss") \
                        or error["reason"] == "INVALID_ARGUMENT":
                    server_errors.append(f"{tool.name}: {result.content[0].text}")
            else:
                await s.validate_tool_result(tool.name, result)
                outcomes["OK"] = outcomes.get("OK", 0) + 1
        check(not server_errors, "read-only tools failed:\n" + "\n".join(server_errors))
        return {"tools": len(tools), "read_only_outcomes": outcomes}


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--command")
    parser.add_argument("--config")
    parser.add_argument("--base")
    parser.add_argument("--token")
    args = parser.parse_args()
    summary = {"transport": args.transport}
    summary["default_policy"] = await default_policy(args)
    summary["agent_payment"] = await agent_payment(args)
    if args.transport == "http":
        summary["whole_spec"] = await whole_spec(args)
    print(json.dumps(summary))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        sys.exit(1)
