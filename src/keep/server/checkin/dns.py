"""DNS for keep-checkin: an embedded authoritative responder, and RFC 2136
UPDATE (signed with TSIG) into an existing authoritative server.

The responder answers only for its zone: A and AAAA of registered names, SOA
and NS at the apex (with the name server's own addresses, when it is inside
the zone), NXDOMAIN with the SOA for names the zone does not hold (deeper ones
included), an empty answer (NODATA) for types a name does not have, REFUSED
for anything outside the zone and for zone transfers. It never recurses.
EDNS: version 0 only (others get BADVERS), a 1232-byte UDP payload (the DNS
flag day value). Packets that are responses (QR=1) get no reply. dnspython
does all wire-format parsing and rendering; a query it cannot parse is
answered FORMERR when it has a readable header, else dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update

from keep.server.checkin.registry import Registry

log = logging.getLogger("keep.checkin.dns")
TTL = 60  # seconds: addresses change, caches should not hold them long
SOA_TIMERS = (3600, 600, 86400, TTL)  # refresh, retry, expire, minimum (negative TTL)
TCP_MAX = 65535
UDP_PAYLOAD = 1232  # EDNS buffer size we advertise and honour (DNS flag day 2020)
UDP_PLAIN = 512  # without EDNS
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # a burst of thousands of queries waits here, not dropped
TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


class Zone:
    def __init__(
        self, origin: str, registry: Registry, ns: str | None = None, ns_addresses: tuple[str, ...] = ()
    ) -> None:
        """`ns`: the zone's name server (default ns1.ZONE); `ns_addresses`:
        its A/AAAA, served (and given as glue) when it lies inside the zone."""
        self.origin = dns.name.from_text(origin)
        self.registry = registry
        self.ns = dns.name.from_text(ns) if ns else dns.name.from_text("ns1", self.origin)
        self.ns_addresses = ns_addresses
        self.hostmaster = dns.name.from_text("hostmaster", self.origin)

    def label(self, qname: dns.name.Name) -> str | None:
        """The registered name for `qname` (its single label below the zone),
        "" for the apex, None outside the zone; a deeper name inside the zone
        gives a label no name can have (it does not exist)."""
        if qname == self.origin:
            return ""
        if not qname.is_subdomain(self.origin):
            return None
        if len(qname) != len(self.origin) + 1:
            return "."
        return qname.labels[0].decode("ascii", "replace").lower()

    def _ns_rrsets(self, name: dns.name.Name, qtype: int) -> list[dns.rrset.RRset]:
        """The in-zone name server's A/AAAA records of type `qtype` (or both)."""
        out = []
        for rdtype in ("A", "AAAA"):
            if qtype in (dns.rdatatype.from_text(rdtype), dns.rdatatype.ANY):
                values = [a for a in self.ns_addresses if (":" in a) == (rdtype == "AAAA")]
                if values:
                    out.append(dns.rrset.from_text_list(name, TTL, "IN", rdtype, values))
        return out

    async def soa(self) -> dns.rrset.RRset:
        refresh, retry, expire, minimum = SOA_TIMERS
        serial = await self.registry.serial() % 2**32
        text = f"{self.ns} {self.hostmaster} {serial} {refresh} {retry} {expire} {minimum}"
        return dns.rrset.from_text(self.origin, TTL, "IN", "SOA", text)

    async def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query, recursion_available=False)
        if query.edns >= 0:
            response.use_edns(0, 0, UDP_PAYLOAD)
        response.flags |= dns.flags.AA
        refusal = self._refusal(query)
        if refusal is not None:
            if refusal == dns.rcode.REFUSED:
                response.flags &= ~dns.flags.AA
            response.set_rcode(refusal)
            return response
        question = query.question[0]
        if question.name == self.origin:
            await self._apex(response, question.rdtype)
        elif question.name == self.ns and self.ns_addresses:
            response.answer += self._ns_rrsets(self.ns, question.rdtype)
        else:
            await self._name(response, self.label(question.name) or ".", question)
        if not response.answer and response.rcode() == dns.rcode.NOERROR:
            response.authority.append(await self.soa())  # NODATA
        return response

    def _refusal(self, query: dns.message.Message) -> dns.rcode.Rcode | None:
        """The rcode of a query this server does not answer, or None."""
        if query.edns > 0:  # RFC 6891: we speak EDNS version 0 only
            return dns.rcode.BADVERS
        if len(query.question) != 1:
            return dns.rcode.FORMERR
        if query.opcode() != 0:
            return dns.rcode.NOTIMP
        question = query.question[0]
        outside = self.label(question.name) is None or question.rdclass != dns.rdataclass.IN
        return dns.rcode.REFUSED if outside or question.rdtype in TRANSFERS else None

    async def _apex(self, response: dns.message.Message, qtype: int) -> None:
        if qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            response.answer.append(await self.soa())
        if qtype in (dns.rdatatype.NS, dns.rdatatype.ANY):
            response.answer.append(dns.rrset.from_text(self.origin, TTL, "IN", "NS", str(self.ns)))
            response.additional += self._ns_rrsets(self.ns, dns.rdatatype.ANY)  # glue

    async def _name(self, response: dns.message.Message, label: str, question: Any) -> None:
        """A registered name's A/AAAA; NXDOMAIN with the SOA for any other."""
        qtype = question.rdtype
        record = None if label == "." else await self.registry.lookup(label)
        if record is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(await self.soa())
            return
        if qtype in (dns.rdatatype.A, dns.rdatatype.ANY) and record.ipv4:
            response.answer.append(dns.rrset.from_text(question.name, TTL, "IN", "A", record.ipv4))
        if qtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY) and record.ipv6:
            response.answer.append(dns.rrset.from_text(question.name, TTL, "IN", "AAAA", record.ipv6))

    async def handle(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            if len(wire) < 12:
                return None
            # Echo the id with FORMERR, as resolvers expect; nothing else is parsed.
            (qid,) = struct.unpack("!H", wire[:2])
            return struct.pack("!HHHHHH", qid, 0x8001, 0, 0, 0, 0)
        if query.flags & dns.flags.QR:
            return None  # a response, not a query: never answer those
        return (await self.answer(query)).to_wire(max_size=TCP_MAX)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports double
            if granted < UDP_RECEIVE_BUFFER:
                log.warning(
                    "DNS receive buffer capped at %d bytes by net.core.rmem_max: a burst of queries "
                    "may be dropped (deploy/sysctl/60-keep-checkin.conf raises it)",
                    granted,
                )

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asyncio.get_running_loop().create_task(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.zone.handle(data)
        if reply is not None and self.transport is not None:
            query = dns.message.from_wire(data)
            limit = min(max(query.payload, UDP_PLAIN), UDP_PAYLOAD) if query.edns >= 0 else UDP_PLAIN
            if len(reply) > limit:  # truncated: the client retries over TCP
                short = dns.message.make_response(query)
                if query.edns >= 0:
                    short.use_edns(0, 0, UDP_PAYLOAD)
                short.flags |= dns.flags.TC
                reply = short.to_wire()
            self.transport.sendto(reply, addr)


async def _tcp_client(zone: Zone, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            header = await asyncio.wait_for(reader.readexactly(2), timeout=10)
            (length,) = struct.unpack("!H", header)
            wire = await asyncio.wait_for(reader.readexactly(length), timeout=10)
            reply = await zone.handle(wire)
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


@dataclass
class Responder:
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


async def start_responder(zone: Zone, host: str, port: int) -> Responder:
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(zone), local_addr=(host, port))
    tcp = await asyncio.start_server(lambda r, w: _tcp_client(zone, r, w), host, port)
    return Responder(udp, tcp)


# RFC 2136 ---------------------------------------------------------------------------
_KEY_RE = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{\s*algorithm\s+"?(?P<alg>[\w.-]+)"?\s*;\s*secret\s+"(?P<secret>[^"]+)"\s*;',
    re.S,
)


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str

    @classmethod
    def from_file(cls, path: Path) -> TsigKey:
        """A key in BIND's format, as `tsig-keygen` writes it."""
        match = _KEY_RE.search(path.read_text())
        if match is None:
            raise ValueError(f"{path} holds no BIND key statement (key NAME {{ algorithm …; secret …; }};)")
        return cls(match["name"], match["alg"], match["secret"])


class Pusher:
    """Sends each change to the authoritative server as a signed UPDATE."""

    def __init__(self, origin: str, server: str, port: int, key: TsigKey) -> None:
        self.origin = dns.name.from_text(origin)
        self.server, self.port = server, port
        self.keyring = dns.tsigkeyring.from_text({key.name: (key.algorithm, key.secret)})
        self.keyname = dns.name.from_text(key.name)

    async def push(self, label: str, ipv4: str | None, ipv6: str | None) -> None:
        update = dns.update.UpdateMessage(self.origin, keyring=self.keyring, keyname=self.keyname)
        for rdtype, value in (("A", ipv4), ("AAAA", ipv6)):
            if value:
                update.replace(label, TTL, rdtype, value)
            else:
                update.delete(label, rdtype)
        reply = await dns.asyncquery.tcp(update, self.server, port=self.port, timeout=10)
        if reply.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"the DNS server refused the update: {dns.rcode.to_text(reply.rcode())}")
