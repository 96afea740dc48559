/* test_secret.c - the credential detectors: their patterns (compiled here
 * with Hyperscan as the engine compiles them) and their confirmers, on
 * values in the places they leak from (JSON, env files, YAML, headers,
 * URLs, code), and on look-alikes they must leave alone. Every value is
 * fake: random, with a valid shape and checksum where the format has one. */
#include <ctype.h>
#include <hs/hs.h>

#include "dlp_internal.h"
#include "unit.h"

static const dlp_detector *detector(const char *kind)
{
	for (size_t i = 0; i < dlp_secret_detector_count; i++)
		if (strcmp(dlp_secret_detectors[i].kind, kind) == 0)
			return &dlp_secret_detectors[i];
	return NULL;
}

/* The best confirmed match of one detector over text, at or above the
 * default confidence; n counts them. */
typedef struct found {
	const dlp_detector *d;
	const char *text;
	size_t len, start, end;
	float confidence;
	int n;
} found;

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		    void *ctx)
{
	(void)flags;
	found *f = ctx;
	dlp_hit h = {.data = f->text, .len = f->len, .start = from, .end = to, .pattern = id};
	dlp_match m = {.start = from, .end = to, .confidence = 0.5f};
	if (!f->d->confirm(&h, &m) || m.confidence < DLP_DEFAULT_MIN_CONFIDENCE)
		return 0;
	CHECK(m.start < m.end && m.end <= f->len);
	if (f->n++ == 0 || m.confidence > f->confidence) {
		f->start = m.start;
		f->end = m.end;
		f->confidence = m.confidence;
	}
	return 0;
}

static found scan_kind(const char *kind, const char *text)
{
	found f = {.d = detector(kind), .text = text, .len = strlen(text)};
	if (!f.d) {
		fprintf(stderr, "no detector %s\n", kind);
		exit(1);
	}
	const char *res[8];
	unsigned flags[8], ids[8];
	CHECK(f.d->npatterns <= 8);
	for (size_t i = 0; i < f.d->npatterns; i++) {
		res[i] = f.d->patterns[i].re;
		flags[i] = HS_FLAG_SOM_LEFTMOST |
			   (f.d->patterns[i].flags & DLP_RE_CASELESS ? HS_FLAG_CASELESS : 0);
		ids[i] = (unsigned)i;
	}
	hs_database_t *db = NULL;
	hs_compile_error_t *err = NULL;
	if (hs_compile_multi(res, flags, ids, (unsigned)f.d->npatterns, HS_MODE_BLOCK, NULL, &db,
			     &err) != HS_SUCCESS) {
		fprintf(stderr, "%s: %s\n", kind, err->message);
		exit(1);
	}
	hs_scratch_t *scratch = NULL;
	CHECK(hs_alloc_scratch(db, &scratch) == HS_SUCCESS);
	CHECK(hs_scan(db, text, (unsigned)f.len, 0, scratch, on_match, &f) == HS_SUCCESS);
	hs_free_scratch(scratch);
	hs_free_database(db);
	return f;
}

/* The detector finds value (its span is exactly value) in text. */
#define FINDS(kind, text, value) finds(__LINE__, kind, text, value, 0)
/* ... with at least this confidence. */
#define FINDS_AT(kind, text, value, conf) finds(__LINE__, kind, text, value, conf)
#define MISSES(kind, text) misses(__LINE__, kind, text)

static void finds(int line, const char *kind, const char *text, const char *value, float conf)
{
	found f = scan_kind(kind, text);
	if (f.n == 0) {
		fprintf(stderr, "line %d: %s found nothing in: %s\n", line, kind, text);
		exit(1);
	}
	size_t vl = strlen(value);
	if (f.end - f.start != vl || memcmp(text + f.start, value, vl) != 0) {
		fprintf(stderr, "line %d: %s found \"%.*s\", expected \"%s\"\n", line, kind,
			(int)(f.end - f.start), text + f.start, value);
		exit(1);
	}
	if (f.confidence < conf) {
		fprintf(stderr, "line %d: %s confidence %.2f < %.2f\n", line, kind, f.confidence,
			conf);
		exit(1);
	}
}

static void misses(int line, const char *kind, const char *text)
{
	found f = scan_kind(kind, text);
	if (f.n != 0) {
		fprintf(stderr, "line %d: %s found \"%.*s\" (%.2f) in: %s\n", line, kind,
			(int)(f.end - f.start), text + f.start, f.confidence, text);
		exit(1);
	}
}

/* ---- The table ---------------------------------------------------------- */

AB_TEST(secret_table_has_the_stable_kinds)
{
	static const char *const kinds[] = {"aws_access_key_id",
					    "aws_secret_access_key",
					    "github_token",
					    "gitlab_token",
					    "slack_token",
					    "slack_webhook",
					    "stripe_key",
					    "openai_api_key",
					    "anthropic_api_key",
					    "google_api_key",
					    "gcp_service_account",
					    "azure_storage_key",
					    "jwt",
					    "private_key",
					    "npm_token",
					    "pypi_token",
					    "huggingface_token",
					    "sendgrid_api_key",
					    "twilio",
					    "discord_bot_token",
					    "database_url",
					    "url_basic_auth",
					    "generic_api_key",
					    "http_basic_auth",
					    "password_assignment",
					    "shopify_token",
					    "mailgun_api_key",
					    "telegram_bot_token",
					    "digitalocean_token",
					    "databricks_token",
					    "hashicorp_vault_token",
					    "age_secret_key",
					    "square_token",
					    "azure_ad_client_secret"};
	CHECK_EQ_INT(dlp_secret_detector_count, sizeof(kinds) / sizeof(kinds[0]));
	for (size_t i = 0; i < dlp_secret_detector_count; i++) {
		const dlp_detector *d = &dlp_secret_detectors[i];
		CHECK_STR(d->kind, kinds[i]);
		CHECK(d->cls == DLP_SECRET);
		CHECK(d->what && strlen(d->what) > 10 && !strchr(d->what, '\n'));
		CHECK(d->example && d->patterns && d->npatterns > 0 && d->confirm);
		for (const char *c = d->kind; *c; c++)
			CHECK(islower((unsigned char)*c) || *c == '_');
	}
}

AB_TEST(secret_every_example_is_found_by_its_detector)
{
	for (size_t i = 0; i < dlp_secret_detector_count; i++) {
		found f = scan_kind(dlp_secret_detectors[i].kind, dlp_secret_detectors[i].example);
		if (f.n == 0) {
			fprintf(stderr, "%s misses its example\n", dlp_secret_detectors[i].kind);
			exit(1);
		}
	}
}

/* ---- Cloud providers ------------------------------------------------------ */

AB_TEST(secret_aws_access_key_id)
{
	FINDS_AT("aws_access_key_id", "AWS_ACCESS_KEY_ID=AKIAKTAIPPAT6CVJJEEV\n",
		 "AKIAKTAIPPAT6CVJJEEV", 0.9f);
	FINDS("aws_access_key_id", "{\"AccessKeyId\": \"ASIATX72O4S3HYIY6LWM\"}",
	      "ASIATX72O4S3HYIY6LWM");
	MISSES("aws_access_key_id", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE");
	MISSES("aws_access_key_id", "AKIAAAAAAAAAAAAAAAAA");
	/* Part of a longer token, or a character outside base32 (0, 1, 8). */
	MISSES("aws_access_key_id", "XAKIAKTAIPPAT6CVJJEEV");
	MISSES("aws_access_key_id", "AKIAKTAIPPAT6CVJJEEVQ");
	MISSES("aws_access_key_id", "AKIAKTAIPPAT6CVJJE01");
}

AB_TEST(secret_aws_secret_access_key)
{
	const char *ini = "[default]\naws_access_key_id = AKIAKTAIPPAT6CVJJEEV\n"
			  "aws_secret_access_key = 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\n";
	FINDS("aws_secret_access_key", ini, "J88z2QCkmJI2TW6JH6tJ7aYz7NxWpoiPuj5FDZQl");
	FINDS("aws_secret_access_key",
	      "{\"AccessKeyId\": \"ASIATX72O4S3HYIY6LWM\", \"SecretAccessKey\": "
	      "\"r25wy0OiW1ZjoKHtAj1f94udnD8O0w2INYBaITfI\"}",
	      "r25wy0OiW1ZjoKHtAj1f94udnD8O0w2INYBaITfI");
	FINDS("aws_secret_access_key", "export AWS_SECRET=r25wy0OiW1ZjoKHtAj1f94udnD8O0w2INYBaITfI",
	      "r25wy0OiW1ZjoKHtAj1f94udnD8O0w2INYBaITfI");
	/* No label, but next to an access key id. */
	FINDS("aws_secret_access_key",
	      "creds: AKIAKTAIPPAT6CVJJEEV J88z2QCkmJI2TW6JH6tJ7aYz7NxWpoiPuj5FDZQl",
	      "J88z2QCkmJI2TW6JH6tJ7aYz7NxWpoiPuj5FDZQl");
	MISSES("aws_secret_access_key",
	       "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
	/* A git SHA and a lone 40-character value without a label or an id. */
	MISSES("aws_secret_access_key",
	       "aws_secret_access_key = a1d1d33bbf99760a601bee3ee77abe6379d10967");
	MISSES("aws_secret_access_key", "value J88z2QCkmJI2TW6JH6tJ7aYz7NxWpoiPuj5FDZQl");
	/* 41 characters is not a secret access key. */
	MISSES("aws_secret_access_key",
	       "aws_secret_access_key = J88z2QCkmJI2TW6JH6tJ7aYz7NxWpoiPuj5FDZQlx");
}

AB_TEST(secret_gcp_service_account)
{
	const char *key = "{\n  \"type\": \"service_account\",\n  \"project_id\": \"demo-4821\",\n"
			  "  \"private_key_id\": \"50428b78ca325ab95d95a51644fbb1f8ba582b9b\",\n"
			  "  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n...\"\n}";
	FINDS_AT("gcp_service_account", key, "50428b78ca325ab95d95a51644fbb1f8ba582b9b", 0.9f);
	/* Escaped inside another JSON string. */
	FINDS("gcp_service_account",
	      "{\"creds\": \"{\\\"type\\\": \\\"service_account\\\", \\\"private_key_id\\\": "
	      "\\\"50428b78ca325ab95d95a51644fbb1f8ba582b9b\\\"}\"}",
	      "50428b78ca325ab95d95a51644fbb1f8ba582b9b");
	/* Not a service account key file. */
	MISSES("gcp_service_account", "{\"type\": \"authorized_user\", \"private_key_id\": "
				      "\"50428b78ca325ab95d95a51644fbb1f8ba582b9b\"}");
}

AB_TEST(secret_azure_storage_key)
{
	const char *key = "mHhgW+TMgzMw2QnZ5FVzIqHacT2a0vbi0k7+Sy0fdAxY8Di5Z29LuC/4h+iPIqq626V49me7"
			  "nuTsfUKG25Nxyn==";
	char buf[512];
	snprintf(buf, sizeof(buf),
		 "DefaultEndpointsProtocol=https;AccountName=demo;AccountKey=%s;EndpointSuffix="
		 "core.windows.net",
		 key);
	FINDS_AT("azure_storage_key", buf, key, 0.9f);
	snprintf(buf, sizeof(buf), "AZURE_STORAGE_KEY: \"%s\"", key);
	FINDS("azure_storage_key", buf, key);
	/* The same shape with nothing about Azure around it. */
	snprintf(buf, sizeof(buf), "blob: %s", key);
	MISSES("azure_storage_key", buf);
	MISSES("azure_storage_key",
	       "AccountKey=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx==");
}

AB_TEST(secret_azure_ad_client_secret)
{
	FINDS("azure_ad_client_secret",
	      "AZURE_CLIENT_SECRET=6Hh6Q~JRxMK0xjw5ygRS3bElLbGq-jF8QHxJUidc",
	      "6Hh6Q~JRxMK0xjw5ygRS3bElLbGq-jF8QHxJUidc");
	FINDS("azure_ad_client_secret",
	      "{\"clientSecret\": \"6Hh6Q~JRxMK0xjw5ygRS3bElLbGq-jF8QHxJUidc\"}",
	      "6Hh6Q~JRxMK0xjw5ygRS3bElLbGq-jF8QHxJUidc");
	MISSES("azure_ad_client_secret", "abc1Q~xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	/* Too long for the format. */
	MISSES("azure_ad_client_secret", "6Hh6Q~JRxMK0xjw5ygRS3bElLbGq-jF8QHxJUidcQ7w9");
}

AB_TEST(secret_google_api_key)
{
	FINDS("google_api_key", "const KEY = 'AIzaG0N5QateycZdotUQI0Za45bR4ELVoTalWDN';",
	      "AIzaG0N5QateycZdotUQI0Za45bR4ELVoTalWDN");
	FINDS("google_api_key",
	      "https://maps.example/api?key=AIzaG0N5QateycZdotUQI0Za45bR4ELVoTalWDN&x=1",
	      "AIzaG0N5QateycZdotUQI0Za45bR4ELVoTalWDN");
	MISSES("google_api_key", "AIzaXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
	MISSES("google_api_key", "AIzaG0N5QateycZdotUQI0Za45bR4ELVoTalWDNq");
}

AB_TEST(secret_digitalocean_databricks_vault)
{
	FINDS("digitalocean_token",
	      "DIGITALOCEAN_TOKEN=dop_v1_"
	      "1be7d5ce957400bfff4984ea83b1e409998f1187cfb074afd1dc81536abd458a",
	      "dop_v1_1be7d5ce957400bfff4984ea83b1e409998f1187cfb074afd1dc81536abd458a");
	MISSES("digitalocean_token",
	       "dop_v1_0000000000000000000000000000000000000000000000000000000000000000");
	FINDS("databricks_token", "{\"token\": \"dapia2a8149a353135fa5c727c35cb93e507\"}",
	      "dapia2a8149a353135fa5c727c35cb93e507");
	FINDS("databricks_token", "DATABRICKS_TOKEN=dapia2a8149a353135fa5c727c35cb93e507-2",
	      "dapia2a8149a353135fa5c727c35cb93e507-2");
	MISSES("databricks_token", "dapi00000000000000000000000000000000");
	MISSES("databricks_token", "xdapia2a8149a353135fa5c727c35cb93e507");
	FINDS("hashicorp_vault_token", "X-Vault-Token: hvs.ZJzzzzgEOzdmenCkhvMdgaKj\r\n",
	      "hvs.ZJzzzzgEOzdmenCkhvMdgaKj");
	MISSES("hashicorp_vault_token", "hvs.xxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	MISSES("hashicorp_vault_token", "hvs.short");
}

/* ---- Code hosting and packages ----------------------------------------- */

AB_TEST(secret_github_token_checks_its_crc)
{
	FINDS_AT("github_token",
		 "{\"github\": {\"token\": \"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\"}}",
		 "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", 0.95f);
	FINDS("github_token", "GH_TOKEN=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",
	      "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");
	FINDS("github_token", "Authorization: token ghu_2h8vE6vZHhwpSNEva12GcAOEFAtZvG1RsY3Y\r\n",
	      "ghu_2h8vE6vZHhwpSNEva12GcAOEFAtZvG1RsY3Y");
	FINDS("github_token",
	      "https://x-access-token:ghs_G02I2TcW5xmpkR4NrlZJO1n4Ss1Uov4YPYuT@github.com/o/r",
	      "ghs_G02I2TcW5xmpkR4NrlZJO1n4Ss1Uov4YPYuT");
	FINDS("github_token", "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",
	      "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");
	/* One character off, in the body or in the checksum: a typo or a fake. */
	MISSES("github_token", "ghp_bsOzzPTAeUzwTT2vNJBoPC4a7Wk7cR1HH1Tx");
	MISSES("github_token", "ghp_csOzzPTAeUzwTT2vNJBoPC4a7Wk7cR1HH1Tw");
	MISSES("github_token", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	MISSES("github_token", "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A");
}

AB_TEST(secret_github_fine_grained_token)
{
	const char *pat =
	    "github_pat_cbcT2C4UadTKGXOr7Nfy6m_jkBCXeJbSA8WWHdOvUekQYmQG2CcWDqfoJHDMc8EXrVqp"
	    "TYMhGTadwB52R2";
	char buf[256];
	snprintf(buf, sizeof(buf), "GITHUB_TOKEN=\"%s\"", pat);
	FINDS("github_token", buf, pat);
	MISSES("github_token",
	       "github_pat_11AAAAAAAAAAAAAAAAAAAA_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	       "xxxxxxxxxxxxxxxxxxxxx");
}

AB_TEST(secret_npm_token_checks_its_crc)
{
	FINDS_AT("npm_token",
		 "//registry.npmjs.org/:_authToken=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\n",
		 "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", 0.95f);
	FINDS("npm_token", "NPM_TOKEN: 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",
	      "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");
	MISSES("npm_token", "npm_Zc5EPuTBh5HprpqHEpTm7KqzcriWPn2wRU42");
	MISSES("npm_token", "npm_install_dependencies_for_workspace01");
}

AB_TEST(secret_gitlab_token)
{
	FINDS("gitlab_token", "PRIVATE-TOKEN: glpat-fWJHYDkJYPS8-LYf2ABK\r\n",
	      "glpat-fWJHYDkJYPS8-LYf2ABK");
	FINDS("gitlab_token", "runner:\n  token: glrt-qodlVhupNKQWFcJboOm0\n",
	      "glrt-qodlVhupNKQWFcJboOm0");
	FINDS("gitlab_token", "--registration-token GR1348941ue7Tj_dl1upSAEhHwFBC",
	      "GR1348941ue7Tj_dl1upSAEhHwFBC");
	FINDS("gitlab_token", "{\"t\":\"gldt--ZhDXDEqYURMp3_5BW-i\"}", "gldt--ZhDXDEqYURMp3_5BW-i");
	FINDS("gitlab_token", "glptt-ef8c18f87967ee3dbf68bbedf06cc70aa77c4f35",
	      "glptt-ef8c18f87967ee3dbf68bbedf06cc70aa77c4f35");
	MISSES("gitlab_token", "glpat-xxxxxxxxxxxxxxxxxxxx");
	MISSES("gitlab_token", "glpat-12345678901234567890");
}

AB_TEST(secret_pypi_and_huggingface)
{
	const char *pypi =
	    "pypi-AgEIcHlwaS5vcmc0lIja8nSwu4MqqAQCWUDwsU1ZqDzOQGIjIlaJTugltL_G2GZIpPd1tAHo_-r";
	char buf[256];
	snprintf(buf, sizeof(buf), "[pypi]\nusername = __token__\npassword = %s\n", pypi);
	FINDS("pypi_token", buf, pypi);
	MISSES("pypi_token", "pypi-AgEIcHlwaS5vcmcshort");
	MISSES("pypi_token",
	       "pypi-AgEIcHlwaS5vcmcXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
	FINDS("huggingface_token", "HF_TOKEN=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",
	      "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");
	MISSES("huggingface_token", "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH");
	MISSES("huggingface_token", "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2");
	MISSES("huggingface_token", "use_hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

/* ---- Chat, payments, mail ----------------------------------------------- */

AB_TEST(secret_slack)
{
	FINDS("slack_token",
	      "SLACK_BOT_TOKEN=xoxb-021833065670-3706221974897-daxBC1AXJpVLfMdQsXybI43I",
	      "xoxb-021833065670-3706221974897-daxBC1AXJpVLfMdQsXybI43I");
	FINDS("slack_token",
	      "Authorization: Bearer "
	      "xoxp-32544398538-406910502812-4351434909996-51205812b6721896921fc1b092d68a8b",
	      "xoxp-32544398538-406910502812-4351434909996-51205812b6721896921fc1b092d68a8b");
	MISSES("slack_token", "xoxb-your-token-here");
	MISSES("slack_token", "xoxb-000000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx");
	const char *hook =
	    "https://hooks.slack.com/services/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";
	char buf[256];
	snprintf(buf, sizeof(buf), "{\"webhook_url\": \"%s\"}", hook);
	FINDS_AT("slack_webhook", buf, hook, 0.9f);
	MISSES("slack_webhook",
	       "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX");
	MISSES("slack_webhook", "https://hooks.slack.com/services/");
}

AB_TEST(secret_stripe_key)
{
	FINDS("stripe_key", "STRIPE_SECRET_KEY=sk_live_kfbH0bu7FlC5MQSqjr7mOwQg",
	      "sk_live_kfbH0bu7FlC5MQSqjr7mOwQg");
	FINDS("stripe_key", "stripe.api_key = \"rk_test_sVCbkVeM8cnMwIKZvRa2dFqY\"",
	      "rk_test_sVCbkVeM8cnMwIKZvRa2dFqY");
	/* Publishable keys are meant to be public. */
	MISSES("stripe_key", "pk_live_kfbH0bu7FlC5MQSqjr7mOwQg");
	MISSES("stripe_key", "sk_test_xxxxxxxxxxxxxxxxxxxxxxxx");
}

AB_TEST(secret_sendgrid_twilio_mailgun)
{
	FINDS("sendgrid_api_key",
	      "SENDGRID_API_KEY='SG.18-cfbLdmgjY62gVWSOxAW._nSO79Zc0PrxaKJVALCs5aPqB1Es_"
	      "mRMwc89yNCByPi'",
	      "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");
	MISSES("sendgrid_api_key",
	       "SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	FINDS("twilio", "TWILIO_ACCOUNT_SID=ACd142d4b04d1b4087d7f8cb8cbac1a0e4",
	      "ACd142d4b04d1b4087d7f8cb8cbac1a0e4");
	FINDS("twilio", "twilio:\n  api_key_sid: SK05946960f84d331f8f1956f5ca5fa6f5\n",
	      "SK05946960f84d331f8f1956f5ca5fa6f5");
	FINDS("twilio", "{\"twilio\": {\"auth_token\": \"13b8ea328fa378f9d9ed7c1afcb1e57f\"}}",
	      "13b8ea328fa378f9d9ed7c1afcb1e57f");
	/* 32 hex digits with nothing about Twilio: an MD5, a request id. */
	MISSES("twilio", "etag: 13b8ea328fa378f9d9ed7c1afcb1e57f");
	MISSES("twilio", "ACd142d4b04d1b4087d7f8cb8cbac1a0e4");
	MISSES("twilio", "twilio docs: see section 13b8ea328fa378f9d9ed7c1afcb1e57f");
	FINDS("mailgun_api_key", "MAILGUN_API_KEY=key-83a8aa8338f44a0e46196c510def7f8a",
	      "key-83a8aa8338f44a0e46196c510def7f8a");
	MISSES("mailgun_api_key", "cache key-83a8aa8338f44a0e46196c510def7f8a");
}

AB_TEST(secret_shopify_square_telegram_discord)
{
	FINDS("shopify_token", "X-Shopify-Access-Token: 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\r\n",
	      "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");
	MISSES("shopify_token", "shpat_00000000000000000000000000000000");
	FINDS(
	    "square_token",
	    "SQUARE_ACCESS_TOKEN=EAAAchG1Om_8rb7JBJNQ_tHb09N1GSuLX5W6An0kiNoOHa29XIyGfzFBsoB2KuVu",
	    "EAAAchG1Om_8rb7JBJNQ_tHb09N1GSuLX5W6An0kiNoOHa29XIyGfzFBsoB2KuVu");
	FINDS("square_token",
	      "{\"secret\": \"sq0csp-F_7lM99oeFIZzDvb80oXL_2u4ncNXAlG0UwZAUvnTrt\"}",
	      "sq0csp-F_7lM99oeFIZzDvb80oXL_2u4ncNXAlG0UwZAUvnTrt");
	FINDS("square_token", "sq0atp-1AzqcdbgCib34w-oOlip-R", "sq0atp-1AzqcdbgCib34w-oOlip-R");
	MISSES("square_token", "sq0atp-XXXXXXXXXXXXXXXXXXXXXX");
	/* A line of base64 of machine code. */
	MISSES("square_token", "EAAAAAABIi1QkCEiLRCRQMf9IjUwkUEyJVCQgSCnqRIlEJBxEiVwkEEiJRCQo6JN");
	FINDS("telegram_bot_token",
	      "bot = Bot(token=\"9428942456:AAgwQLDfido8AwwyEFEQ1pXvCXmE5IxLVGI\")",
	      "9428942456:AAgwQLDfido8AwwyEFEQ1pXvCXmE5IxLVGI");
	FINDS("telegram_bot_token",
	      "https://api.telegram.org/bot9428942456:AAgwQLDfido8AwwyEFEQ1pXvCXmE5IxLVGI/getMe",
	      "9428942456:AAgwQLDfido8AwwyEFEQ1pXvCXmE5IxLVGI");
	MISSES("telegram_bot_token", "19428942456:AAgwQLDfido8AwwyEFEQ1pXvCXmE5IxLVGI");
	FINDS("discord_bot_token",
	      "DISCORD_TOKEN=Mjc4OTI1MzA1ODg5NTY3MTQ3NA.KcGnLX.bKY1m8V0QSiIZnBiDfJd67rNq0B",
	      "Mjc4OTI1MzA1ODg5NTY3MTQ3NA.KcGnLX.bKY1m8V0QSiIZnBiDfJd67rNq0B");
	/* The first part decodes to text, not to an id. */
	MISSES("discord_bot_token",
	       "SGVsbG8gd29ybGQsIHRoaXMgaXMu.KcGnLX.oOOL8dKLzdocJ2isAjIhKtJ0Rlg");
}

/* ---- AI providers --------------------------------------------------------- */

AB_TEST(secret_openai_api_key)
{
	const char *proj =
	    "sk-proj-WDwDleeVZaTB1OFSBxlca_JF_W3Ybbvq4rmBgMo5KR9CsyktxouxM6QVTVprM2VmluUfEKm1"
	    "rPT3BlbkFJh8wVmTefioJWUlIT6AzhKJTAwJwPRx3WWnVZ5bx3xzea3vP-ervtMzHNR0SUULcAA_gKYDyJgp";
	char buf[512];
	snprintf(buf, sizeof(buf), "OPENAI_API_KEY=%s\n", proj);
	FINDS_AT("openai_api_key", buf, proj, 0.95f);
	FINDS("openai_api_key",
	      "openai.api_key = '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'",
	      "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");
	FINDS("openai_api_key",
	      "{\"key\":\"sk-svcacct-F2lKeoPIPc8WGzMrk4bvwuYpxKbqDeKiS7oG7F4VT3BlbkFJEjd4-z7c_"
	      "kkaVJYcX0n558VIbBoh2bompjPBDqpF\"}",
	      "sk-svcacct-F2lKeoPIPc8WGzMrk4bvwuYpxKbqDeKiS7oG7F4VT3BlbkFJEjd4-z7c_"
	      "kkaVJYcX0n558VIbBoh2bompjPBDqpF");
	MISSES("openai_api_key",
	       "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	MISSES("openai_api_key", "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	/* Anthropic's keys also start with sk-. */
	MISSES("openai_api_key", "sk-ant-api03-xBm-_NLfc0iz7yqW6x4hJm5RWCOrW7AjSR8-"
				 "8guHydh1yRX7a8SRajPG8opcjna3AqyW8pCoN2u"
				 "osToSCWsu6X6KrW9WBAA");
}

AB_TEST(secret_anthropic_api_key)
{
	const char *key =
	    "sk-ant-api03-xBm-_NLfc0iz7yqW6x4hJm5RWCOrW7AjSR8-8guHydh1yRX7a8SRajPG8opcjna3Aq"
	    "yW8pCoN2uosToSCWsu6X6KrW9WBAA";
	char buf[512];
	snprintf(buf, sizeof(buf), "x-api-key: %s\r\n", key);
	FINDS_AT("anthropic_api_key", buf, key, 0.95f);
	const char *admin =
	    "sk-ant-admin01-bjRogDHiZyPt3VC-OajvWwzc723lr1mOJEryCgIze1MM31OccPa1Nig7neirQkEv"
	    "RcG6eRKCtL-XmlX0INpVNyY2N1b_3AA";
	snprintf(buf, sizeof(buf), "{\"anthropic\": \"%s\"}", admin);
	FINDS("anthropic_api_key", buf, admin);
	MISSES("anthropic_api_key",
	       "ANTHROPIC_API_KEY=sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxAA");
	MISSES("anthropic_api_key", "sk-ant-api03-short");
}

/* ---- Structured secrets ---------------------------------------------------- */

AB_TEST(secret_jwt)
{
	const char *jwt =
	    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0ODIxOTM3IiwibmFtZSI6IkFubiBFeGFtcGxl"
	    "IiwiaWF0IjoxNzMzMTAwMDAwfQ.eeQM2AF_T0RIo6kH5M045lTqbGaAY4XFLFy5ZOTSQAy";
	char buf[512];
	snprintf(buf, sizeof(buf), "Authorization: Bearer %s\r\n", jwt);
	FINDS_AT("jwt", buf, jwt, 0.9f);
	snprintf(buf, sizeof(buf), "Set-Cookie: session=%s; HttpOnly", jwt);
	FINDS("jwt", buf, jwt);
	/* No "alg" in the header: base64 JSON, not a token. */
	MISSES("jwt", "eyJmb28iOiJiYXIiLCJuIjoxfQ.eyJzdWIiOiJ4MSJ9.u8jzPde0IgxLd6GncfBAepfJBd0Kh8");
	/* A header alone. */
	MISSES("jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
}

AB_TEST(secret_private_key)
{
	const char *pem = "-----BEGIN RSA PRIVATE KEY-----\n"
			  "lJKjMF8YjLYQkA+eNH+uiG3GUHeV7HRcTD/LLrLHPhSTTIZ+4Fe6ckmb+hIeg2sq\n"
			  "wVcm7n1rCvarE8OOksrg0VBXsVmYf5TMdBHXF/FFebKqEA+7s0+lk/6u0nJIt2Lj\n"
			  "q1gF8HZaK5wdfg83xEkhvT9lZOrffxQqcmaMR+Ij0W7djEe0avxbruJh9TsmFS0m\n"
			  "O6g7A3zUli5DSAEla4henJBR8yCw24PznqetvQ105t7H89+u\n"
			  "-----END RSA PRIVATE KEY-----";
	char buf[1024];
	snprintf(buf, sizeof(buf), "key file:\n%s\ntrailer", pem);
	FINDS_AT("private_key", buf, pem, 0.95f);
	/* In JSON, the newlines are the two characters \n. */
	const char *json =
	    "-----BEGIN PRIVATE KEY-----\\nlJKjMF8YjLYQkA+eNH+uiG3GUHeV7HRcTD/LLrLHPhSTTIZ+4"
	    "Fe6ckmb+hIeg2sq\\nwVcm7n1rCvarE8OOksrg0VBXsVmYf5TMdBHXF/FFebKqEA+7s0+lk/6u0nJIt2Lj\\n"
	    "-----END PRIVATE KEY-----\\n";
	snprintf(buf, sizeof(buf), "{\"private_key\": \"%s\"}", json);
	FINDS("private_key", buf,
	      "-----BEGIN PRIVATE "
	      "KEY-----\\nlJKjMF8YjLYQkA+eNH+uiG3GUHeV7HRcTD/LLrLHPhSTTIZ+4Fe6ckmb+hIeg"
	      "2sq\\nwVcm7n1rCvarE8OOksrg0VBXsVmYf5TMdBHXF/FFebKqEA+7s0+lk/6u0nJIt2Lj\\n-----END "
	      "PRIVATE KEY-----");
	/* An encrypted PEM: headers, a blank line, the body. */
	FINDS("private_key",
	      "-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: "
	      "AES-128-CBC,0F3A\r\n\r\n"
	      "q1gF8HZaK5wdfg83xEkhvT9lZOrffxQqcmaMR+Ij0W7djEe0avxbruJh9TsmFS0m\r\n",
	      "-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: "
	      "AES-128-CBC,0F3A\r\n\r\n"
	      "q1gF8HZaK5wdfg83xEkhvT9lZOrffxQqcmaMR+Ij0W7djEe0avxbruJh9TsmFS0m");
	FINDS("private_key",
	      "-----BEGIN OPENSSH PRIVATE "
	      "KEY-----\nwVcm7n1rCvarE8OOksrg0VBXsVmYf5TMdBHXF/FFebKqEA+7s0+lk/6u0nJIt2Lj\n",
	      "-----BEGIN OPENSSH PRIVATE "
	      "KEY-----\nwVcm7n1rCvarE8OOksrg0VBXsVmYf5TMdBHXF/FFebKqEA+7s0+lk/6u0nJIt2Lj");
	/* Documentation: a header with nothing, or an ellipsis, for a body. */
	MISSES("private_key",
	       "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----");
	MISSES("private_key", "if line == \"-----BEGIN PRIVATE KEY-----\":");
	MISSES("private_key",
	       "-----BEGIN PUBLIC "
	       "KEY-----\nlJKjMF8YjLYQkA+eNH+uiG3GUHeV7HRcTD/LLrLHPhSTTIZ+4Fe6ckmb+hIeg2sq\n");
	MISSES("private_key",
	       "-----BEGIN PRIVATE "
	       "KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
}

AB_TEST(secret_age_secret_key_checks_its_bech32)
{
	FINDS_AT("age_secret_key",
		 "# created: "
		 "2026-12-02\nAGE-SECRET-KEY-"
		 "1HA6F2UTK4RKRU0VCU5SVEFEF8YEHNS35Z8N3P0KE3X6UYRC5YHERPUAMUY\n",
		 "AGE-SECRET-KEY-1HA6F2UTK4RKRU0VCU5SVEFEF8YEHNS35Z8N3P0KE3X6UYRC5YHERPUAMUY",
		 0.95f);
	MISSES("age_secret_key",
	       "AGE-SECRET-KEY-1HA6F2UTK4RKRU0VCU5SVEFEF8YEHNS35Z8N3P0KE3X6UYRC5YHERPUAMUQ");
}

/* ---- Credentials in URLs and headers ----------------------------------- */

AB_TEST(secret_database_url_reports_the_password)
{
	FINDS_AT("database_url", "DATABASE_URL=postgres://app:Vb7q2LmX9tRw@db.internal:5432/app\n",
		 "Vb7q2LmX9tRw", 0.9f);
	FINDS("database_url", "url: \"mysql+pymysql://app:Vb7q2L%40mX9tRw@db:3306/app\"",
	      "Vb7q2L%40mX9tRw");
	FINDS("database_url", "redis://:Vb7q2LmX9tRw@cache:6379/0", "Vb7q2LmX9tRw");
	FINDS("database_url",
	      "{\"uri\": "
	      "\"mongodb+srv://svc:Vb7q2LmX9tRw@cluster0.x.example.net/?retryWrites=true\"}",
	      "Vb7q2LmX9tRw");
	FINDS("database_url", "amqps://guest:p4ss@w0rd!@mq:5671/", "p4ss@w0rd!");
	FINDS("database_url", "jdbc:sqlserver://sa:Vb7q2LmX9tRw@db", "Vb7q2LmX9tRw");
	MISSES("database_url", "postgres://app@localhost/db");
	MISSES("database_url", "postgres://localhost:5432/db");
	MISSES("database_url", "postgres://user:password@localhost/db");
	MISSES("database_url", "postgresql://app:${DB_PASSWORD}@db/app");
	MISSES("database_url", "mysql://root:****@db/app");
}

AB_TEST(secret_url_basic_auth_reports_the_password)
{
	FINDS("url_basic_auth", "git clone https://deploy:q8Zt3nVw2Lp@git.internal/repo.git",
	      "q8Zt3nVw2Lp");
	FINDS("url_basic_auth", "proxy = \"http://svc:Wq9x2LmT@proxy.corp:3128\"", "Wq9x2LmT");
	FINDS("url_basic_auth", "ftp://deploy:q8Zt3nVw2Lp@files.internal/", "q8Zt3nVw2Lp");
	MISSES("url_basic_auth", "https://user:pass@example.com/");
	MISSES("url_basic_auth", "https://user:password@example.com/");
	MISSES("url_basic_auth", "https://admin:${PASS}@host/");
	/* Masked is not a password; a password with a '*' in it is. */
	MISSES("url_basic_auth", "https://admin:****@host/");
	FINDS("url_basic_auth", "https://admin:Kitsune*7894yPfZ@host/", "Kitsune*7894yPfZ");
	MISSES("url_basic_auth", "https://host.example:8443/path@v2");
	MISSES("url_basic_auth", "see https://example.com/a:b@c");
	/* Database URLs are database_url's. */
	MISSES("url_basic_auth", "postgres://app:Vb7q2LmX9tRw@db/app");
}

AB_TEST(secret_http_basic_auth)
{
	FINDS_AT("http_basic_auth",
		 "GET / HTTP/1.1\r\nAuthorization: Basic ZGVwbG95OndkZXNMNUR0WGpnUzNQ\r\n",
		 "ZGVwbG95OndkZXNMNUR0WGpnUzNQ", 0.9f);
	FINDS("http_basic_auth",
	      "{\"headers\": {\"authorization\": \"Basic YWRtaW46aHVudGVyMnBhc3M=\"}}",
	      "YWRtaW46aHVudGVyMnBhc3M=");
	/* user:password, no password, binary, prose. */
	MISSES("http_basic_auth", "Authorization: Basic dXNlcjpwYXNzd29yZA==");
	MISSES("http_basic_auth", "Authorization: Basic ZGVwbG95Og==");
	MISSES("http_basic_auth", "Authorization: Basic AQIDBAUG");
	MISSES("http_basic_auth", "a Basic understanding of it");
}

/* ---- Keyword assignments -------------------------------------------------- */

AB_TEST(secret_generic_api_key_needs_a_keyword_and_entropy)
{
	const char *v = "gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk";
	FINDS("generic_api_key", "api_key = \"gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk\"", v);
	FINDS("generic_api_key", "{\"client_secret\":\"gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk\"}", v);
	FINDS("generic_api_key", "{\\\"apiKey\\\": \\\"gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk\\\"}", v);
	FINDS("generic_api_key", "X-Api-Key: gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk\r\n", v);
	/* In prose, as agents and people write it. */
	FINDS("generic_api_key", "please set API_KEY to gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk and go", v);
	FINDS("generic_api_key", "app_secret は gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk を使う", v);
	MISSES("generic_api_key", "we set the token to expire after 30 minutes");
	FINDS("aws_secret_access_key",
	      "set AWS_SECRET_ACCESS_KEY to J88z2QCkmJI2TW6JH6tJ7aYz7NxWpoiPuj5FDZQl now",
	      "J88z2QCkmJI2TW6JH6tJ7aYz7NxWpoiPuj5FDZQl");
	FINDS("generic_api_key", "export ACCESS_TOKEN=gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk", v);
	FINDS("generic_api_key", "auth-token: 'gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk'", v);
	FINDS("generic_api_key", "$cfg['secret'] => 'gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk';", v);
	FINDS("generic_api_key", "Authorization: Bearer gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk\r\n", v);
	FINDS("generic_api_key",
	      "<config><apiKey>gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk</apiKey></config>", v);
	MISSES("generic_api_key", "<token>a1d1d33bbf99760a601bee3ee77abe6379d10967</token>");
	/* Hex values: only long ones, after a keyword that names a key. */
	FINDS("generic_api_key", "API_KEY=a1d1d33bbf99760a601bee3ee77abe63",
	      "a1d1d33bbf99760a601bee3ee77abe63");
	MISSES("generic_api_key", "token: a1d1d33bbf99760a601bee3ee77abe6379d10967");
	MISSES("generic_api_key", "api_key = a1d1d33bbf99760a");
	MISSES("generic_api_key", "token_count = 16");
	MISSES("generic_api_key", "token = 123e4567-e89b-12d3-a456-426614174000");
	MISSES("generic_api_key", "api_key = \"your_api_key_here_please\"");
	MISSES("generic_api_key", "secret = os.environ.get(\"SECRET_KEY_VALUE\")");
	MISSES("generic_api_key", "api_key = settings.OPENAI_API_KEY_VALUE");
	MISSES("generic_api_key", "access_token: aaaaaaaaaaaaaaaaaaaaaaaa");
	MISSES("generic_api_key", "secret: \"a sentence that is not a key at all\"");
	MISSES("generic_api_key", "token_file=/var/run/secrets/kubernetes.io/token");
	/* Vendor tokens are left to their own detectors. */
	MISSES("generic_api_key", "token: ghp_bsOzzPTAeUzwTT2vNJBoPC4a7Wk7cR1HH1Tx");
}

AB_TEST(secret_password_assignment)
{
	FINDS("password_assignment", "DB_PASSWORD=\"Tq7#mW2z!pL9\"\n", "Tq7#mW2z!pL9");
	/* '&' ends a bare value only where a form's next field begins. */
	FINDS("password_assignment", "パスワード: Tokyo&22382qnO?\n", "Tokyo&22382qnO?");
	FINDS("password_assignment", "user=svc&password=Tq7mW2z9pL&submit=1", "Tq7mW2z9pL");
	FINDS("password_assignment", "{\"username\": \"svc\", \"password\": \"Tq7#mW2z!pL9\"}",
	      "Tq7#mW2z!pL9");
	FINDS("password_assignment", "database:\n  password: Tq7mW2zpL9  # rotate\n", "Tq7mW2zpL9");
	FINDS("password_assignment", "POST /login\r\n\r\nuser=bob&password=Tq7mW2zpL9&next=%2F",
	      "Tq7mW2zpL9");
	FINDS("password_assignment", "password := \"Tq7mW2zpL9\"", "Tq7mW2zpL9");
	FINDS("password_assignment", "$config['passwd'] => 'Tq7mW2zpL9';", "Tq7mW2zpL9");
	FINDS("password_assignment",
	      "\xe3\x83\x91\xe3\x82\xb9\xe3\x83\xaf\xe3\x83\xbc\xe3\x83\x89\xef\xbc\x9aTq7mW2zpL9",
	      "Tq7mW2zpL9");
	FINDS("password_assignment",
	      "\xe3\x83\x91\xe3\x82\xb9\xe3\x83\xaf\xe3\x83\xbc\xe3\x83\x89: Tq7mW2zpL9",
	      "Tq7mW2zpL9");
	FINDS("password_assignment", "<datasource><password>Tq7mW2zpL9</password></datasource>",
	      "Tq7mW2zpL9");
	MISSES("password_assignment", "<password>${db.password}</password>");
	MISSES("password_assignment", "password: ${DB_PASSWORD}");
	MISSES("password_assignment", "\"password\": \"${DB_PASSWORD}\"");
	MISSES("password_assignment", "password = os.environ[\"DB_PASSWORD\"]");
	MISSES("password_assignment", "password = get_password()");
	MISSES("password_assignment", "password = self.password");
	MISSES("password_assignment", "password: Optional[str] = None");
	MISSES("password_assignment", "\"password\": null");
	MISSES("password_assignment", "password=********");
	MISSES("password_assignment", "password: \"<your password>\"");
	MISSES("password_assignment", "password: abc");
	MISSES("password_assignment", "\"password\": {\"type\": \"string\"}");
	MISSES("password_assignment", "PWD=/home/user/project");
	MISSES("password_assignment", "password_min_length: 12345678");
}

/* ---- Through the engine --------------------------------------------------- */

static dlp_engine *engine(void)
{
	char err[256] = "";
	dlp_engine *e = dlp_engine_new(err, sizeof(err));
	if (!e) {
		fprintf(stderr, "dlp_engine_new: %s\n", err);
		exit(1);
	}
	return e;
}

/* The findings of kind in f, and the first one's value. */
static size_t count_kind(const dlp_findings *f, const char *kind, const char **value)
{
	size_t n = 0;
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->v[i].kind, kind) == 0 && n++ == 0 && value)
			*value = f->v[i].value;
	return n;
}

AB_TEST(secret_scan_finds_every_example_under_its_kind)
{
	dlp_engine *e = engine();
	dlp_opts o = {.values = true};
	for (size_t i = 0; i < dlp_secret_detector_count; i++) {
		const dlp_detector *d = &dlp_secret_detectors[i];
		dlp_findings f = {0};
		CHECK_EQ_INT(dlp_scan(e, d->example, strlen(d->example), &o, &f), 0);
		if (count_kind(&f, d->kind, NULL) != 1) {
			fprintf(stderr, "%s: %zu findings of its kind in its example\n", d->kind,
				count_kind(&f, d->kind, NULL));
			exit(1);
		}
		dlp_findings_free(&f);
	}
	dlp_engine_free(e);
}

AB_TEST(secret_scan_an_env_file)
{
	const char *env = "# service config\n"
			  "AWS_ACCESS_KEY_ID=AKIAKTAIPPAT6CVJJEEV\n"
			  "AWS_SECRET_ACCESS_KEY=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\n"
			  "GITHUB_TOKEN=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\n"
			  "DATABASE_URL=postgres://app:Vb7q2LmX9tRw@db.internal:5432/app\n"
			  "STRIPE_API_KEY=sk_live_kfbH0bu7FlC5MQSqjr7mOwQg\n"
			  "SESSION_SECRET=gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk\n"
			  "DB_PASSWORD=Tq7#mW2z!pL9\n"
			  "TOKEN_TTL=3600\n"
			  "LOG_LEVEL=debug\n";
	dlp_engine *e = engine();
	dlp_opts o = {.values = true};
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, env, strlen(env), &o, &f), 0);
	const char *v = NULL;
	CHECK_EQ_INT(count_kind(&f, "aws_access_key_id", &v), 1);
	CHECK_STR(v, "AKIAKTAIPPAT6CVJJEEV");
	/* Found by its label and by the key id next to it: one finding. */
	CHECK_EQ_INT(count_kind(&f, "aws_secret_access_key", &v), 1);
	CHECK_STR(v, "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");
	CHECK_EQ_INT(count_kind(&f, "github_token", &v), 1);
	CHECK_STR(v, "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");
	CHECK_EQ_INT(count_kind(&f, "database_url", &v), 1);
	CHECK_STR(v, "Vb7q2LmX9tRw");
	CHECK_EQ_INT(count_kind(&f, "stripe_key", &v), 1);
	/* The generic detector reports only what no specific one did. */
	CHECK_EQ_INT(count_kind(&f, "generic_api_key", &v), 1);
	CHECK_STR(v, "gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk");
	CHECK_EQ_INT(count_kind(&f, "password_assignment", &v), 1);
	CHECK_STR(v, "Tq7#mW2z!pL9");
	CHECK_EQ_INT(f.n, 7);
	for (size_t i = 0; i < f.n; i++) {
		CHECK(f.v[i].cls == DLP_SECRET && f.v[i].confidence >= 0.5f);
		CHECK(memcmp(env + f.v[i].start, f.v[i].value, f.v[i].end - f.v[i].start) == 0);
		CHECK(i == 0 || f.v[i - 1].start <= f.v[i].start);
	}
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

AB_TEST(secret_scan_leaves_ordinary_code_alone)
{
	const char *code =
	    "static int token_count = 16;\n"
	    "/* The password is read from $DB_PASSWORD; see password: ${DB_PASSWORD}. */\n"
	    "const char *sha = \"a1d1d33bbf99760a601bee3ee77abe6379d10967\";\n"
	    "uuid = \"123e4567-e89b-12d3-a456-426614174000\"\n"
	    "password = get_password(user)\n"
	    "secret = os.environ[\"SECRET_KEY\"]\n"
	    "api_key = \"your_api_key_here\"\n"
	    "example = AKIAIOSFODNN7EXAMPLE\n"
	    "key = sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
	    "url = https://user:password@example.com/\n"
	    "Authorization: Basic dXNlcjpwYXNzd29yZA==\n"
	    "See the basic idea: tokens are parsed by the tokenizer.\n"
	    "typo = ghp_bsOzzPTAeUzwTT2vNJBoPC4a7Wk7cR1HH1Tx\n";
	dlp_engine *e = engine();
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, code, strlen(code), NULL, &f), 0);
	for (size_t i = 0; i < f.n; i++)
		if (f.v[i].cls == DLP_SECRET)
			fprintf(stderr, "unexpected %s at [%zu, %zu): %.*s\n", f.v[i].kind,
				f.v[i].start, f.v[i].end, (int)(f.v[i].end - f.v[i].start),
				code + f.v[i].start);
	for (size_t i = 0; i < f.n; i++)
		CHECK(f.v[i].cls != DLP_SECRET);
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

AB_TEST(secret_scan_stream_finds_a_token_split_across_pieces)
{
	const char *body = "{\"headers\": {\"Authorization\": \"token "
			   "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\"}}";
	size_t len = strlen(body), at = (size_t)(strstr(body, "npm_") - body);
	dlp_engine *e = engine();
	dlp_stream *s = dlp_stream_open(e, NULL);
	CHECK(s);
	dlp_findings f = {0};
	/* Pieces of 7 bytes: the token arrives in six of them. */
	for (size_t i = 0; i < len; i += 7)
		CHECK_EQ_INT(dlp_stream_feed(s, body + i, len - i < 7 ? len - i : 7, &f), 0);
	CHECK_EQ_INT(dlp_stream_close(s, &f), 0);
	CHECK_EQ_INT(count_kind(&f, "npm_token", NULL), 1);
	for (size_t i = 0; i < f.n; i++)
		if (strcmp(f.v[i].kind, "npm_token") == 0) {
			CHECK_EQ_INT(f.v[i].start, at);
			CHECK_EQ_INT(f.v[i].end, at + 40);
		}
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

AB_TEST(secret_scan_min_confidence_drops_weaker_findings)
{
	/* A bare word after "password:" is a weaker finding than a quoted
	 * value with digits and symbols. */
	const char *yaml =
	    "db:\n  password: sunshineriver\n  token: \"gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk\"\n";
	dlp_engine *e = engine();
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, yaml, strlen(yaml), NULL, &f), 0);
	CHECK_EQ_INT(count_kind(&f, "password_assignment", NULL), 1);
	CHECK_EQ_INT(count_kind(&f, "generic_api_key", NULL), 1);
	dlp_findings_free(&f);
	dlp_opts o = {.min_confidence = 0.65f};
	CHECK_EQ_INT(dlp_scan(e, yaml, strlen(yaml), &o, &f), 0);
	CHECK_EQ_INT(count_kind(&f, "password_assignment", NULL), 0);
	CHECK_EQ_INT(count_kind(&f, "generic_api_key", NULL), 1);
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

/* The first finding of kind, or NULL. */
static const dlp_finding *first_of(const dlp_findings *f, const char *kind)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->v[i].kind, kind) == 0)
			return &f->v[i];
	return NULL;
}

AB_TEST(secret_scan_finds_secrets_the_decoders_reveal)
{
	dlp_engine *e = engine();
	dlp_opts o = {.values = true};
	dlp_findings f = {0};
	/* A token in a base64-encoded env file: the span is the base64. */
	const char *b64 =
	    "data: R0lUSFVCX1RPS0VOPWdocF9ic096elBUQWVVendUVDJ2TkpCb1BDNGE3V2s3Y1IxSEgxVHcK";
	CHECK_EQ_INT(dlp_scan(e, b64, strlen(b64), &o, &f), 0);
	const dlp_finding *x = first_of(&f, "github_token");
	CHECK(x);
	CHECK_STR(x->value, "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");
	CHECK(x->nchain >= 1 && x->chain[0] == DLP_DEC_BASE64);
	CHECK(x->start >= 6 && x->end <= strlen(b64));
	dlp_findings_free(&f);
	/* A database URL, percent-encoded in a query string. */
	const char *q = "/connect?dsn=postgres%3A%2F%2Fapp%3AVb7q2LmX9tRw%40db%2Fapp&x=1";
	CHECK_EQ_INT(dlp_scan(e, q, strlen(q), &o, &f), 0);
	x = first_of(&f, "database_url");
	CHECK(x);
	CHECK_STR(x->value, "Vb7q2LmX9tRw");
	CHECK_EQ_INT(x->start, (size_t)(strstr(q, "Vb7q") - q));
	dlp_findings_free(&f);
	/* A key whose prefix hides behind JSON \u escapes. */
	const char *json = "{\"k\": \"\\u0067hp_bsOzzPTAeUzwTT2vNJBoPC4a7Wk7cR1HH1Tw\"}";
	CHECK_EQ_INT(dlp_scan(e, json, strlen(json), &o, &f), 0);
	x = first_of(&f, "github_token");
	CHECK(x);
	CHECK_STR(x->value, "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");
	CHECK_EQ_INT(x->start, 7);
	dlp_findings_free(&f);
	dlp_engine_free(e);
}
