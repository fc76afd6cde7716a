"""The one error tree of the Traffic Center.

Every error the service can report is a subclass of :class:`TrafficCenterError` and carries a
stable machine-readable ``code``. Where OSO defines a result code for the situation, that code
is used verbatim, because LAS vendors match on it. Errors know nothing of HTTP: the api layer
maps each class to a status in one table (``traffic_center.api.problems``).

    TrafficCenterError
    ├── InvalidInput                      bad request data (422)
    │   ├── InvalidBrin, InvalidRouteringskenmerk, InvalidZoeksleutel, InvalidKoppelsleutel
    │   ├── InvalidOverdrachtsoort, InvalidSector, InvalidEndpointKind, InvalidResultCode,
    │   ├── InvalidUrl
    │   ├── InvalidSessieId
    │   ├── SearchKeyAmbiguous            both or neither of zoeksleutel/koppelsleutel
    │   ├── SearchKeyWrongKind            a zoeksleutel for an swv-dossier, or vice versa
    │   ├── ClearPupilNumber              a field looks like a BSN/onderwijsnummer
    │   └── IdempotencyKeyReused          same key, different request
    ├── CallerRefused                     the TLS peer may not act (403; 401 without a cert)
    │   ├── CertificateMissing, CertificateUnknown, CertificateRevoked
    │   ├── CertificateExpired, CertificateWrongPurpose
    │   ├── CertificateInconsistent       serialNumber, OU, SAN URI and inventory disagree
    │   ├── WrongRole, EndpointNotRegistered, EndpointInactive   (the caller's own endpoint)
    │   └── ForwardedCertificateRefused, ForwardedCertificateMissing,
    │       ForwardedCertificateMalformed  (RFC 9440 Client-Cert through a proxy)
    ├── NotFound                          (404)
    │   ├── SessionNotFound, SchoolNotFound, EndpointNotFound, CertificateNotFound, CrlNotPublished
    │   └── KoppelsleutelNotFound         no SWV link with this koppelsleutel for the caller
    ├── Conflict                          (409)
    │   ├── SchoolExists, EndpointExists, CertificateAlreadyRevoked
    │   └── FeedbackAlreadyGiven          the SWV's feedback for a koppelsleutel went once
    ├── OsoRefusal                        an OSO result code refusing the message
    │   ├── VerstrekkerNietBekend, GeenRelatieMetDoel, OnbekendAanleverpunt
    │   ├── SessieAfwijkend, SessieReedsAfgemeld, SessieVerlopen, AanleverpuntNietActief
    │   ├── ResultNotWitnessed            a close result the TC did not see happen
    │   ├── NotificationNotRequested      rule 6: that doel never asked this bron
    │   ├── AanleverpuntVerkeerdeSoort    rule 10: an OV endpoint where an SWV one belongs
    │   └── BronAnswer                    the bron's own answer, passed through to the doel
    │       ├── DossierNietGevonden, DossierNogNietGereed, DossierVerouderd
    │       └── GeenInzage, GeenToestemming   (also the TC's parent gate, rule 8)
    ├── RateLimited                       (429)
    ├── RequestTooLarge                   a request body over the API's cap (413)
    ├── MalformedRequest                  not HTTP/1.1 the server can parse (400, closed)
    ├── StoreUnavailable                  (503)
    │   └── AuditUnavailable              the audit log cannot be written: refused (503)
    │       └── AuditKeyMismatch          this node's secret does not sign the chain
    ├── InternalError                     unexpected: 500 InterneFout, still recorded
    ├── RelayError                        the relay to a LAS endpoint failed
    │   ├── RelayNotConfigured, RelayBusy (503)      this node's side
    │   └── UpstreamFailure                          the LAS's side
    │       ├── UpstreamUnreachable (502), UpstreamTimeout (504), UpstreamInvalidAnswer (502)
    │       ├── DossierTooLarge (413)
    │       └── TransferAborted           the stream broke after the doel got the headers
    └── AdminError                        certificate-admin mistakes (CLI exit 2)
        ├── CaAlreadyExists, CaMissing, InvalidCsr, InvalidValidity
        ├── SecretMissing, WeakSecret
        └── NodeMisconfigured             a file or setting the node needs cannot be used
"""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

from typing import ClassVar


class TrafficCenterError(Exception):
    """Base of every error the Traffic Center reports; ``code`` is stable for clients."""

    code: ClassVar[str] = "TrafficCenterError"
    title: ClassVar[str] = "Traffic Center error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        super().__init__(self.detail)


# --- bad input -------------------------------------------------------------------------------


class InvalidInput(TrafficCenterError):
    code = "OngeldigeInvoer"
    title = "The request is not valid"


class InvalidBrin(InvalidInput):
    code = "OngeldigeBrin"
    title = "A BRIN is two digits followed by two upper-case letters, e.g. 12AB"


class InvalidRouteringskenmerk(InvalidInput):
    code = "OngeldigRouteringskenmerk"
    title = "A routeringskenmerk is exactly 20 digits"


class InvalidZoeksleutel(InvalidInput):
    code = "OngeldigeZoeksleutel"
    title = "A zoeksleutel is 43 characters of unpadded base64url: 32 bytes (zoeksleutel v1)"


class InvalidKoppelsleutel(InvalidInput):
    code = "OngeldigeKoppelsleutel"
    title = "A koppelsleutel is an upper-case GUID"


class InvalidOverdrachtsoort(InvalidInput):
    code = "OngeldigeOverdrachtsoort"
    title = "Unknown overdrachtsoort"


class InvalidSector(InvalidInput):
    code = "OngeldigeSector"
    title = "Unknown sector"


class InvalidEndpointKind(InvalidInput):
    code = "OngeldigeSoortAanleverpunt"
    title = "Unknown endpoint kind; use OV or SWV"


class InvalidResultCode(InvalidInput):
    code = "OngeldigResultaat"
    title = "Unknown or unusable result code"


class InvalidUrl(InvalidInput):
    code = "OngeldigeUrl"
    title = "An endpoint URL must be an absolute https URL"


class InvalidSessieId(InvalidInput):
    code = "OngeldigeSessieId"
    title = "A sessie_id is a UUID"


class SearchKeyAmbiguous(InvalidInput):
    code = "ZoeksleutelOfKoppelsleutel"
    title = "Give exactly one of zoeksleutel and koppelsleutel"


class SearchKeyWrongKind(InvalidInput):
    code = "SleutelPastNietBijOverdrachtsoort"
    title = (
        "An swv-dossier is asked with the koppelsleutel the Traffic Center issued; every other "
        "overdrachtsoort with a zoeksleutel"
    )


class ClearPupilNumber(InvalidInput):
    code = "PgnNietToegestaan"
    title = "A field holds what looks like a clear BSN or onderwijsnummer; send a zoeksleutel"


class InvalidCursor(InvalidInput):
    code = "OngeldigeCursor"
    title = "The cursor is not one this Traffic Center handed out"


class InvalidPeriod(InvalidInput):
    code = "OngeldigePeriode"
    title = "since and until must be RFC 3339 date-times with a time zone, since before until"


class IdempotencyKeyReused(InvalidInput):
    code = "IdempotencyKeyHergebruikt"
    title = "This Idempotency-Key was used before for a different request"


# --- who is calling --------------------------------------------------------------------------


class CallerRefused(TrafficCenterError):
    code = "CertificaatGeweigerd"
    title = "The client certificate may not be used here"


class CertificateMissing(CallerRefused):
    code = "CertificaatOntbreekt"
    title = "No client certificate was presented"


class CertificateUnknown(CallerRefused):
    code = "CertificaatOnbekend"
    title = "The client certificate is not in the Traffic Center's inventory"


class CertificateRevoked(CallerRefused):
    code = "CertificaatIngetrokken"
    title = "The client certificate has been revoked"


class CertificateExpired(CallerRefused):
    code = "CertificaatVerlopen"
    title = "The client certificate has expired or is not yet valid"


class CertificateWrongPurpose(CallerRefused):
    code = "CertificaatOngeldig"
    title = "The certificate is not a client certificate for an endpoint"


class CertificateInconsistent(CallerRefused):
    code = "CertificaatInconsistent"
    title = (
        "The certificate's serialNumber, OU and endpoint URI do not name one endpoint, "
        "or do not match the inventory"
    )


class WrongRole(CallerRefused):
    code = "VerkeerdeRol"
    title = "Only the session's doel or bron, as the message requires, may send this"


# The caller's own endpoint; OnbekendAanleverpunt and AanleverpuntNietActief are about an
# endpoint the caller names. One code, one meaning, one status.
class EndpointNotRegistered(CallerRefused):
    code = "EigenAanleverpuntOnbekend"
    title = "The certificate's routeringskenmerk is not a registered endpoint"


class EndpointInactive(CallerRefused):
    code = "EigenAanleverpuntNietActief"
    title = "The caller's own endpoint or school is not active"


# A TLS-terminating proxy forwards the school's certificate in the RFC 9440 Client-Cert
# header; only a connection with a valid proxy certificate may do so (docs/rules.md, rule 1).
class ForwardedCertificateRefused(CallerRefused):
    code = "DoorgestuurdCertificaatGeweigerd"
    title = "A Client-Cert header is accepted only from a valid proxy certificate of the TC CA"


class ForwardedCertificateMissing(CallerRefused):
    code = "DoorgestuurdCertificaatOntbreekt"
    title = "A proxy certificate acts for nobody itself: send the school's Client-Cert header"


class ForwardedCertificateMalformed(CallerRefused):
    code = "DoorgestuurdCertificaatOngeldig"
    title = "The Client-Cert header is not one RFC 9440 byte sequence holding a DER certificate"


# --- not found and conflicts -----------------------------------------------------------------


class NotFound(TrafficCenterError):
    code = "NietGevonden"
    title = "Not found"


class SessionNotFound(NotFound):
    code = "SessieNietGevonden"
    title = "No such session"


class SchoolNotFound(NotFound):
    code = "SchoolNietGevonden"
    title = "No such school"


class EndpointNotFound(NotFound):
    code = "AanleverpuntNietGevonden"
    title = "No such endpoint"


class CertificateNotFound(NotFound):
    code = "CertificaatNietGevonden"
    title = "No certificate with that serial"


class CrlNotPublished(NotFound):
    code = "CrlNietGepubliceerd"
    title = "No CRL has been published yet; the certificate admin publishes one with `ca crl`"


class KoppelsleutelNotFound(NotFound):
    code = "KoppelsleutelOnbekend"
    title = "No SWV notification with this koppelsleutel between your endpoint and that school"


class Conflict(TrafficCenterError):
    code = "Conflict"
    title = "The change conflicts with what exists"


class SchoolExists(Conflict):
    code = "SchoolBestaatAl"
    title = "A school with this BRIN is already registered"


class EndpointExists(Conflict):
    code = "AanleverpuntBestaatAl"
    title = "An endpoint with this routeringskenmerk is already registered"


class CertificateAlreadyRevoked(Conflict):
    """`ca revoke` of a revoked certificate: its first time and reason stay (the inventory,
    the CRL and the audit log say the same), so nothing is written."""

    code = "CertificaatAlIngetrokken"
    title = "The certificate was revoked before"

    def __init__(self, detail: str, *, reason: str | None) -> None:
        super().__init__(detail)
        self.reason = reason


class FeedbackAlreadyGiven(Conflict):
    code = "TerugkoppelingAlGegeven"
    title = "The feedback for this koppelsleutel has already been relayed to the school"


# --- OSO refusals: the code is the OSO result code -------------------------------------------


class OsoRefusal(TrafficCenterError):
    code = "OsoWeigering"
    title = "The message was refused"


class VerstrekkerNietBekend(OsoRefusal):
    code = "VerstrekkerNietBekend"
    title = "The bron school is unknown or not active"


class GeenRelatieMetDoel(OsoRefusal):
    code = "GeenRelatieMetDoel"
    title = "The bron has no relation with this doel for this overdrachtsoort"


class OnbekendAanleverpunt(OsoRefusal):
    code = "OnbekendAanleverpunt"
    title = "The endpoint is unknown or does not belong to that school"


class AanleverpuntNietActief(OsoRefusal):
    code = "AanleverpuntNietActief"
    title = "The endpoint is not active"


class SessieAfwijkend(OsoRefusal):
    code = "SessieAfwijkend"
    title = "The request does not match the session"


class SessieReedsAfgemeld(OsoRefusal):
    code = "SessieReedsAfgemeld"
    title = "The session has already been closed"


class SessieVerlopen(OsoRefusal):
    code = "SessieVerlopen"
    title = "The session has expired"


class ResultNotWitnessed(OsoRefusal):
    code = "ResultaatNietVastgesteld"
    title = (
        "The Traffic Center did not see this result in the session: OverdrachtGeslaagd needs a "
        "complete dossier it relayed (or, peer to peer, a session the bron checked)"
    )


class NotificationNotRequested(OsoRefusal):
    code = "GeenEerderVerzoek"
    title = "That doel endpoint never asked this bron for a dossier in that session (rule 6)"


class AanleverpuntVerkeerdeSoort(OsoRefusal):
    code = "AanleverpuntVerkeerdeSoort"
    title = (
        "The endpoint is of the wrong kind: an swv-dossier goes between a school's OV endpoint "
        "and an SWV endpoint of a samenwerkingsverband, every other dossier between OV "
        "endpoints (rule 10)"
    )


class BronAnswer(OsoRefusal):
    """A result code the bron's LAS answered instead of a dossier; relayed as is."""

    code = "AntwoordVerstrekker"
    title = "The bron answered without a dossier"


class DossierNietGevonden(BronAnswer):
    code = "DossierNietGevonden"
    title = "The bron has no dossier for this zoeksleutel"


class DossierNogNietGereed(BronAnswer):
    code = "DossierNogNietGereed"
    title = "The dossier is not ready yet; the bron will send a notification"


class DossierVerouderd(BronAnswer):
    code = "DossierVerouderd"
    title = "The bron's dossier is not newer than the aanvraagdatum"


class GeenInzage(BronAnswer):
    code = "GeenInzage"
    title = "The parents have not inspected the dossier (required PO→PO and PO→VO)"


class GeenToestemming(BronAnswer):
    code = "GeenToestemming"
    title = "The parents have not consented to the transfer (required VO→VO)"


def bron_answer_classes() -> dict[str, type[BronAnswer]]:
    """The result codes a bron may answer instead of a dossier, by code."""
    return {cls.code: cls for cls in BronAnswer.__subclasses__()}


# --- limits and availability -----------------------------------------------------------------


class RateLimited(TrafficCenterError):
    code = "TeVeelVerzoeken"
    title = "Too many requests from this endpoint; retry later"

    def __init__(self, detail: str | None = None, *, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class RequestTooLarge(TrafficCenterError):
    code = "VerzoekTeGroot"
    title = "The request body is larger than this API accepts"


class MalformedRequest(TrafficCenterError):
    """Refused by the HTTP server itself, before any route: a request line or header it
    cannot parse, headers over their cap, two framings. The connection closes after it."""

    code = "OngeldigVerzoek"
    title = "The request is not HTTP/1.1 this server can read"


class StoreUnavailable(TrafficCenterError):
    code = "OpslagNietBeschikbaar"
    title = "The Traffic Center's store is unavailable; nothing was changed"


class AuditUnavailable(StoreUnavailable):
    """Fail closed: an exchange that cannot be recorded does not happen."""

    code = "AuditNietBeschikbaar"
    title = "The audit log cannot be written; the exchange was refused and nothing was forwarded"


class AuditKeyMismatch(AuditUnavailable):
    """This process's secret is not the one that signs the chain: writing would split it."""

    code = "AuditSleutelOnjuist"
    title = "This node's TC_SECRET_KEY does not sign the audit log; nothing was written"


# --- the unexpected ----------------------------------------------------------------------------


class InternalError(TrafficCenterError):
    """A bug or an unforeseen failure: answered 500, recorded and logged with its request id."""

    code = "InterneFout"
    title = "Internal error; the exchange was recorded and nothing more was changed"


# --- the relay to LAS endpoints --------------------------------------------------------------


class RelayError(TrafficCenterError):
    code = "RelayFout"
    title = "The relay to the LAS endpoint failed"


class RelayNotConfigured(RelayError):
    code = "RelayNietGeconfigureerd"
    title = "This node has no relay certificate; set TC_UPSTREAM_CERT and TC_UPSTREAM_KEY"


class RelayBusy(RelayError):
    code = "TeVeelOverdrachten"
    title = "Too many relays in flight on this node; retry later"


class UpstreamFailure(RelayError):
    """What went wrong on the LAS's side of a relay (counted per code for operators)."""

    code = "FoutBijAanleverpunt"
    title = "The LAS endpoint failed to answer as the OSO contract requires"


class UpstreamUnreachable(UpstreamFailure):
    code = "AanleverpuntOnbereikbaar"
    title = "The LAS endpoint could not be reached (connection or TLS failure)"


class UpstreamTimeout(UpstreamFailure):
    code = "AanleverpuntTijdslimiet"
    title = "The LAS endpoint did not answer in time"


class UpstreamInvalidAnswer(UpstreamFailure):
    code = "OngeldigAntwoordAanleverpunt"
    title = "The LAS endpoint answered something the OSO contract does not allow"


class DossierTooLarge(UpstreamFailure):
    code = "DossierTeGroot"
    title = "The dossier is larger than this Traffic Center relays"


class TransferAborted(UpstreamFailure):
    code = "OverdrachtAfgebroken"
    title = "The transfer broke off; the doel must not use what it received"


# --- certificate administration --------------------------------------------------------------


class AdminError(TrafficCenterError):
    code = "BeheerFout"
    title = "The administrative command cannot be carried out"


class CaAlreadyExists(AdminError):
    code = "CaBestaatAl"
    title = "A CA already exists here; refusing to overwrite it"


class CaMissing(AdminError):
    code = "CaOntbreekt"
    title = "No CA found; run `traffic-center ca init` first"


class InvalidCsr(AdminError):
    code = "OngeldigeCsr"
    title = "The certificate signing request cannot be used"


class InvalidValidity(AdminError):
    code = "OngeldigeGeldigheid"
    title = "The validity period is not acceptable"


class CaUnusable(AdminError):
    code = "CaOnbruikbaar"
    title = "The CA's files cannot be used: unreadable, encrypted, or a key that is not the CA's"


class InvalidHostName(AdminError):
    code = "OngeldigeHostnaam"
    title = "A --host is a DNS name of RFC 1123 labels or an IP address"


class InvalidSubjectName(AdminError):
    code = "OngeldigeNaam"
    title = "A name in a certificate is 1 to 64 characters on one line (RFC 5280 upper bounds)"


class EndpointNotInRegistry(AdminError):
    """A certificate names its endpoint's school: both must be registered, and agree (rule 1)."""

    code = "AanleverpuntNietGeregistreerd"
    title = "Register the school and the endpoint before issuing its certificate"


class OutputNotWritable(AdminError):
    code = "UitvoerNietSchrijfbaar"
    title = "The certificate's files cannot be written there; nothing was recorded"


class SecretMissing(AdminError):
    code = "SleutelOntbreekt"
    title = "No TC_SECRET_KEY, and the audit log already has records: refusing to make a new one"


class WeakSecret(AdminError):
    code = "SleutelTeZwak"
    title = (
        "TC_SECRET_KEY must hold at least 32 random bytes: 64+ hex digits or 43+ base64 "
        "characters (e.g. `openssl rand -hex 32`)"
    )


class NodeMisconfigured(AdminError):
    code = "InstellingOnbruikbaar"
    title = "A setting, or a file it names, cannot be used: the node does not start"


def all_error_classes() -> list[type[TrafficCenterError]]:
    """Every class in the tree, so the api's status table can be proven complete."""
    found: list[type[TrafficCenterError]] = []
    pending: list[type[TrafficCenterError]] = [TrafficCenterError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
