import uuid
import trio
from arcyou_trio.client import ChatClient
from tests.conftest import System, make_room


async def test_probe_rejoin(system: System) -> None:
    alice = uuid.uuid4()
    room = make_room(system.settings.database_url, alice)
    async with ChatClient.connect(system.url) as a:
        await a.auth(alice)
        print(await a.join(room))
        s = await a.send(room, "one")
        with trio.fail_after(5):
            print(await a.next_event())
        print(await a.join(room))
        s2 = await a.send(room, "two")
        with trio.fail_after(5):
            print(await a.next_event())
            print(await a.next_event())
        print(a.pending_events())
