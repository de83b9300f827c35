// The generated Kotlin bindings driven as an Android app would, on the JVM: a HostFetcher
// written in Kotlin (HttpURLConnection standing in for OkHttp), update, resolve, ready, and a
// typed error. Only the glue is under test here; the logic is tested in Rust.
//
// Run by tests/tests/e2e/kotlin.rs with a live server. Environment:
//   BALEEN_SERVER    the server's base URL
//   BALEEN_KEY       the trusted public key (hex)
//   BALEEN_STORE     an empty directory for the device store
//   BALEEN_EXPECTED  the published index.html, to compare bytes with

import java.io.File
import java.net.HttpURLConnection
import java.net.URL
import uniffi.client_core.BaleenClient
import uniffi.client_core.BaleenException
import uniffi.client_core.ClientConfig
import uniffi.client_core.FetchFailure
import uniffi.client_core.DeviceConditions
import uniffi.client_core.HostFetcher
import uniffi.client_core.NetworkType
import uniffi.client_core.WaitReason
import uniffi.client_core.HttpRequest
import uniffi.client_core.HttpResponse

const val ROUTE = "https://m.example.com/checkout/"

class JvmFetcher : HostFetcher {
    var calls = 0

    override fun fetch(request: HttpRequest): HttpResponse {
        calls++
        try {
            val conn = URL(request.url).openConnection() as HttpURLConnection
            conn.requestMethod = request.method
            conn.connectTimeout = 10_000
            conn.readTimeout = 30_000
            for ((name, value) in request.headers) conn.setRequestProperty(name, value)
            if (request.body.isNotEmpty()) {
                conn.doOutput = true
                conn.outputStream.use { it.write(request.body) }
            }
            val status = conn.responseCode
            val stream = if (status >= 400) conn.errorStream else conn.inputStream
            val limit = (request.maxBytes + 1uL).coerceAtMost(Int.MAX_VALUE.toULong()).toInt()
            val body = stream?.use { it.readNBytes(limit) } ?: ByteArray(0)
            val headers = conn.headerFields.filterKeys { it != null }.mapValues { it.value.joinToString(",") }
            return HttpResponse(status.toUShort(), headers, body)
        } catch (e: java.io.IOException) {
            throw FetchFailure.Transport(e.toString())
        }
    }
}

/** A fetcher with a bug: it throws something other than FetchFailure. */
class BrokenFetcher : HostFetcher {
    override fun fetch(request: HttpRequest): HttpResponse {
        throw IllegalStateException("a bug in the host's HTTP stack")
    }
}

fun conditions(network: NetworkType, metered: Boolean = false) = DeviceConditions(
    network = network,
    metered = metered,
    batteryPercent = 80u,
    charging = false,
    lowPowerMode = false,
    freeSpaceBytes = 1uL shl 30,
    foreground = true,
)

fun check(condition: Boolean, what: String) {
    if (!condition) throw AssertionError(what)
}

fun main() {
    val env = System.getenv()
    val fetcher = JvmFetcher()
    val config = ClientConfig(
        dir = env.getValue("BALEEN_STORE"),
        server = env.getValue("BALEEN_SERVER"),
        app = "shop",
        channel = "production",
        deviceId = "kotlin-device",
        hostVersion = "6.0",
        publicKeys = listOf(env.getValue("BALEEN_KEY")),
        threshold = 1u,
        customScheme = "baleen",
        maxPendingLaunches = 2u,
        sequenceFloor = 0uL,
    )
    val client = BaleenClient(config, fetcher)
    check(client.resolve(ROUTE + "index.html") == null, "nothing before the first install")

    val waiting = client.update(conditions(NetworkType.CELLULAR, metered = true))
    check(waiting.installed.isEmpty(), "installed on a metered link: $waiting")
    check(waiting.waiting.map { it.`package` to it.reason } == listOf("checkout" to WaitReason.WIFI), "waiting: $waiting")
    val report = client.update(conditions(NetworkType.WIFI))
    check(report.installed.map { it.`package` to it.to } == listOf("checkout" to "1.0.0"), "report: $report")
    check(fetcher.calls > 0, "the Kotlin fetcher was used")

    // A fetcher that throws an arbitrary exception is a retryable network error, never a crash.
    val brokenConfig = config.copy(dir = env.getValue("BALEEN_STORE") + "-broken")
    val broken = BaleenClient(brokenConfig, BrokenFetcher())
    try {
        broken.update(conditions(NetworkType.WIFI))
        throw AssertionError("a throwing fetcher did not fail the update")
    } catch (e: BaleenException.Network) {
        check(e.detail.contains("host fetcher"), "detail: ${e.detail}")
    }
    check(broken.packages().isEmpty(), "nothing installed through a broken fetcher")
    broken.close()

    val want = File(env.getValue("BALEEN_EXPECTED")).readBytes()
    for (url in listOf(ROUTE + "index.html", "baleen://m.example.com/checkout/index.html")) {
        val hit = client.resolve(url) ?: throw AssertionError("$url does not resolve")
        check(hit.mime.startsWith("text/html"), "mime ${hit.mime}")
        check(File(hit.path).readBytes().contentEquals(want), "$url bytes")
        check(client.resolveBytes(url)!!.contentEquals(want), "$url resolveBytes")
    }

    client.markReady("checkout")
    check(!client.packages().single().pending, "ready")
    try {
        client.markReady("Not A Package")
        throw AssertionError("a bad package id was accepted")
    } catch (e: BaleenException.Other) {
        // The variant tells the host what to do.
    }
    client.close()
    println("kotlin bindings: ok")
}
