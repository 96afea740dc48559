/* test_pii.c - the detectors of personal data, each with values it must
 * find (in Japanese and English context) and look-alikes it must not.
 *
 * The detectors' own patterns are compiled here as the engine compiles
 * them (Hyperscan, byte mode, leftmost start of match) and every hit goes
 * through its detector's confirmer, so these tests see exactly what a
 * detector contributes, without normalisation, decoding or deduplication.
 * Every value is fake: made up, then given valid check digits. */
#include <hs/hs.h>

#include "dlp_internal.h"
#include "unit.h"

#define MAX_PATTERNS 128
#define MAX_FOUND 32

typedef struct found {
	const char *kind;
	float confidence;
	size_t start, end;
} found;

typedef struct scan_result {
	const char *text;
	found v[MAX_FOUND];
	size_t n;
	unsigned detector[MAX_PATTERNS], pattern[MAX_PATTERNS];
} scan_result;

static hs_database_t *db;
static hs_scratch_t *scratch;
static unsigned detector_of[MAX_PATTERNS], pattern_of[MAX_PATTERNS];

static void compile_once(void)
{
	if (db)
		return;
	const char *re[MAX_PATTERNS];
	unsigned flags[MAX_PATTERNS], ids[MAX_PATTERNS], n = 0;
	for (size_t i = 0; i < dlp_pii_detector_count; i++)
		for (size_t j = 0; j < dlp_pii_detectors[i].npatterns; j++) {
			CHECK(n < MAX_PATTERNS);
			const dlp_pattern *p = &dlp_pii_detectors[i].patterns[j];
			re[n] = p->re;
			flags[n] = HS_FLAG_SOM_LEFTMOST |
				   (p->flags & DLP_RE_CASELESS ? HS_FLAG_CASELESS : 0);
			ids[n] = n;
			detector_of[n] = (unsigned)i;
			pattern_of[n] = (unsigned)j;
			n++;
		}
	hs_compile_error_t *err = NULL;
	if (hs_compile_multi(re, flags, ids, n, HS_MODE_BLOCK, NULL, &db, &err) != HS_SUCCESS) {
		fprintf(stderr, "pattern %d: %s\n", err->expression, err->message);
		CHECK(!"the patterns compile");
	}
	CHECK(hs_alloc_scratch(db, &scratch) == HS_SUCCESS);
}

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		    void *ctx)
{
	(void)flags;
	scan_result *r = ctx;
	const dlp_detector *d = &dlp_pii_detectors[detector_of[id]];
	dlp_hit h = {.data = r->text,
		     .len = strlen(r->text),
		     .start = (size_t)from,
		     .end = (size_t)to,
		     .pattern = pattern_of[id]};
	dlp_match m = {.start = h.start, .end = h.end, .confidence = 0.5f};
	if (!d->confirm(&h, &m))
		return 0;
	CHECK(m.start < m.end && m.end <= h.len);
	CHECK(m.confidence >= 0 && m.confidence <= 1);
	CHECK(r->n < MAX_FOUND);
	r->v[r->n++] = (found){d->kind, m.confidence, m.start, m.end};
	return 0;
}

static void scan(const char *text, scan_result *r)
{
	compile_once();
	r->text = text;
	r->n = 0;
	CHECK(hs_scan(db, text, (unsigned)strlen(text), 0, scratch, on_match, r) == HS_SUCCESS);
}

/* How many confirmed hits of kind at or above min cover exactly value (the
 * first occurrence of value in text); value NULL: any span. */
static size_t count(const char *text, const char *kind, const char *value, float min)
{
	scan_result r;
	scan(text, &r);
	size_t start = 0, end = 0, k = 0;
	if (value) {
		const char *at = strstr(text, value);
		CHECK(at != NULL);
		start = (size_t)(at - text);
		end = start + strlen(value);
	}
	for (size_t i = 0; i < r.n; i++) {
		if (strcmp(r.v[i].kind, kind) != 0 || r.v[i].confidence < min)
			continue;
		if (value && (r.v[i].start != start || r.v[i].end != end))
			continue;
		k++;
	}
	return k;
}

/* Found once, reported by default (confidence >= 0.5). */
static bool finds(const char *text, const char *kind, const char *value)
{
	return count(text, kind, value, DLP_DEFAULT_MIN_CONFIDENCE) == 1 &&
	       count(text, kind, NULL, DLP_DEFAULT_MIN_CONFIDENCE) == 1;
}

/* Found with at least this confidence. */
static bool finds_at(const char *text, const char *kind, const char *value, float min)
{
	return count(text, kind, value, min) == 1;
}

/* Nothing of kind is reported by default (a weak hit may remain). */
static bool misses(const char *text, const char *kind)
{
	return count(text, kind, NULL, DLP_DEFAULT_MIN_CONFIDENCE) == 0;
}

/* Seen, but below the default threshold. */
static bool weak(const char *text, const char *kind, const char *value)
{
	return count(text, kind, value, 0) == 1 &&
	       count(text, kind, value, DLP_DEFAULT_MIN_CONFIDENCE) == 0;
}

/* No kind at all is reported by default. */
static bool clean(const char *text)
{
	scan_result r;
	scan(text, &r);
	for (size_t i = 0; i < r.n; i++)
		if (r.v[i].confidence >= DLP_DEFAULT_MIN_CONFIDENCE) {
			fprintf(stderr, "unexpected %s (%.2f) at [%zu,%zu) in \"%s\"\n",
				r.v[i].kind, (double)r.v[i].confidence, r.v[i].start, r.v[i].end,
				text);
			return false;
		}
	return true;
}

AB_TEST(dlp_pii_table_is_well_formed)
{
	CHECK(dlp_pii_detector_count == 18);
	for (size_t i = 0; i < dlp_pii_detector_count; i++) {
		const dlp_detector *d = &dlp_pii_detectors[i];
		CHECK(d->kind && d->what && d->example && d->confirm && d->npatterns > 0);
		CHECK(d->cls == DLP_PII);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(d->kind, dlp_pii_detectors[j].kind) != 0);
		/* Each example is found by its own detector. */
		if (count(d->example, d->kind, NULL, DLP_DEFAULT_MIN_CONFIDENCE) != 1) {
			fprintf(stderr, "%s does not find its example \"%s\"\n", d->kind,
				d->example);
			CHECK(0);
		}
	}
}

AB_TEST(dlp_pii_credit_card)
{
	CHECK(finds("カード番号 4912345678901230 でお支払い", "credit_card", "4912345678901230"));
	CHECK(finds("card: 5454-5412-3456-7892 exp 12/29", "credit_card", "5454-5412-3456-7892"));
	CHECK(finds("Amex 3712 345678 90120", "credit_card", "3712 345678 90120"));
	CHECK(finds("JCB 3530 1234 5678 9018.", "credit_card", "3530 1234 5678 9018"));
	CHECK(finds("pay with 2221001234567896 today", "credit_card", "2221001234567896"));
	CHECK(finds("UnionPay 6212 3456 7890 1232", "credit_card", "6212 3456 7890 1232"));
	CHECK(finds("Visa 4912 3456 7890 1234 566", "credit_card", "4912 3456 7890 1234 566"));
	CHECK(finds_at("クレジットカード: 6011-1234-5678-9019", "credit_card",
		       "6011-1234-5678-9019", 0.95f));
	/* Luhn fails. */
	CHECK(misses("card 4912345678901231", "credit_card"));
	CHECK(misses("card 4912 3456 7890 1239", "credit_card"));
	/* No card brand starts with 9, though the Luhn sum is right. */
	CHECK(dlp_luhn("9912345678901239", 16));
	CHECK(misses("9912345678901239", "credit_card"));
	/* Mixed separators, a longer run, a run of one digit. */
	CHECK(misses("4912 3456-7890 1230", "credit_card"));
	CHECK(misses("4912 3456 7890 1230 5678", "credit_card"));
	CHECK(misses("ref 14912345678901230", "credit_card"));
	CHECK(misses("pi 3.4912345678901230", "credit_card"));
	CHECK(misses("1234 4912 3456 7890 1230", "credit_card"));
	/* An expiry date and a CVV after it are not part of it. */
	CHECK(finds("4912345678901230,12/29,123", "credit_card", "4912345678901230"));
	CHECK(finds("Card: 4912 3456 7890 1230 12/29", "credit_card", "4912 3456 7890 1230"));
	/* An order number with a lucky checksum stays low. */
	CHECK(weak("注文番号 4912345678901230", "credit_card", "4912345678901230"));
}

AB_TEST(dlp_pii_iban)
{
	CHECK(finds("IBAN: DE12500105170648489890.", "iban", "DE12500105170648489890"));
	CHECK(finds("振込先 GB82 WEST 1234 5698 7654 32 まで", "iban",
		    "GB82 WEST 1234 5698 7654 32"));
	CHECK(finds("NL91ABNA0417164300", "iban", "NL91ABNA0417164300"));
	CHECK(misses("GB82WEST12345698765433", "iban"));
	CHECK(misses("GB82 WEST 1234 5698 7654 33", "iban"));
	CHECK(misses("JP961234567890123", "iban"));
}

AB_TEST(dlp_pii_us_ssn)
{
	CHECK(finds("SSN: 536-22-1094", "us_ssn", "536-22-1094"));
	CHECK(finds_at("social security number 536-22-1094", "us_ssn", "536-22-1094", 0.85f));
	CHECK(finds("SSN 536221094", "us_ssn", "536221094"));
	CHECK(finds("社会保障番号（SSN）: 536 22 1094", "us_ssn", "536 22 1094"));
	/* An unlabelled dashed number is reported, with less confidence. */
	CHECK(finds("ref 536-22-1094", "us_ssn", "536-22-1094"));
	CHECK(misses("SSN 000-22-1094", "us_ssn"));
	CHECK(misses("SSN 666-22-1094", "us_ssn"));
	CHECK(misses("SSN 936-22-1094", "us_ssn"));
	CHECK(misses("SSN 536-00-1094", "us_ssn"));
	CHECK(misses("SSN 536-22-0000", "us_ssn"));
	CHECK(misses("SSN 123-45-6789", "us_ssn"));
	/* Bare digits need the label; a longer run is something else. */
	CHECK(misses("invoice 536221094", "us_ssn"));
	CHECK(misses("1-536-22-1094-5", "us_ssn"));
}

AB_TEST(dlp_pii_email)
{
	CHECK(finds("連絡先: taro.yamada@mail.fake-corp.co.jp までご連絡ください", "email",
		    "taro.yamada@mail.fake-corp.co.jp"));
	CHECK(finds("Contact hanako+news@fake-mail.jp.", "email", "hanako+news@fake-mail.jp"));
	/* One address, one finding (not one for ".co" and one for ".jp"). */
	CHECK(count("a.b@fake-corp.co.jp", "email", NULL, 0) == 1);
	/* Documentation domains stay low. */
	CHECK(weak("e.g. taro@example.com", "email", "taro@example.com"));
	CHECK(weak("user@mail.example.org", "email", "user@mail.example.org"));
	CHECK(misses("<img src=icon@2x.png>", "email"));
	CHECK(misses("git clone git@github.com:owner/repo.git", "email"));
	CHECK(misses("user@localhost", "email"));
	CHECK(misses("a..b@fake-mail.jp", "email"));
}

AB_TEST(dlp_pii_phone_number_japanese)
{
	CHECK(finds("携帯: 090-1234-5678", "phone_number", "090-1234-5678"));
	CHECK(finds_at("電話 03-1234-5678", "phone_number", "03-1234-5678", 0.8f));
	CHECK(finds("大阪 06-6123-4567", "phone_number", "06-6123-4567"));
	CHECK(finds("045-123-4567", "phone_number", "045-123-4567"));
	CHECK(finds("0123-45-6789", "phone_number", "0123-45-6789"));
	CHECK(finds("フリーダイヤル 0120-123-456", "phone_number", "0120-123-456"));
	CHECK(finds("0800-123-4567", "phone_number", "0800-123-4567"));
	CHECK(finds("TEL 03(1234)5678", "phone_number", "03(1234)5678"));
	CHECK(finds("+81-90-1234-5678", "phone_number", "+81-90-1234-5678"));
	CHECK(finds("Tel: +81 3 1234 5678", "phone_number", "+81 3 1234 5678"));
	CHECK(finds("連絡先 09012345678", "phone_number", "09012345678"));
	/* Bare digits without a label are not a phone number. */
	CHECK(misses("09012345678", "phone_number"));
	CHECK(misses("HOTEL 0312345678", "phone_number"));
	/* Nine or twelve digits are no Japanese number; dates start not with 0. */
	CHECK(misses("03-1234-567", "phone_number"));
	CHECK(misses("090-1234-56789", "phone_number"));
	CHECK(misses("2024-01-02", "phone_number"));
	CHECK(misses("電話 000-0000-0000", "phone_number"));
	/* A counter-word lowers it. */
	CHECK(weak("注文番号 03-1234-5678", "phone_number", "03-1234-5678"));
}

AB_TEST(dlp_pii_phone_number_international)
{
	CHECK(finds("Call +1 (415) 555-0100 now", "phone_number", "+1 (415) 555-0100"));
	CHECK(finds("+1 415-555-0100", "phone_number", "+1 415-555-0100"));
	CHECK(finds("office (415) 555-0100", "phone_number", "(415) 555-0100"));
	CHECK(finds("phone: 415.555.0100", "phone_number", "415.555.0100"));
	CHECK(finds("+442079460958", "phone_number", "+442079460958"));
	CHECK(finds("London +44 20 7946 0958", "phone_number", "+44 20 7946 0958"));
	CHECK(weak("415-555-0100", "phone_number", "415-555-0100"));
	CHECK(misses("version 1.2.3.4", "phone_number"));
	CHECK(misses("ver 10.0.19045.3803", "phone_number"));
}

AB_TEST(dlp_pii_jp_my_number)
{
	CHECK(finds_at("マイナンバー：123456789018", "jp_my_number", "123456789018", 0.95f));
	CHECK(finds("個人番号 1234-5678-9018 を記入", "jp_my_number", "1234-5678-9018"));
	CHECK(finds("My Number: 4729 1038 5622", "jp_my_number", "4729 1038 5622"));
	CHECK(finds("204829375103（個人番号）", "jp_my_number", "204829375103"));
	/* A valid check digit alone is an order number: below 0.5. */
	CHECK(weak("123456789018", "jp_my_number", "123456789018"));
	CHECK(weak("注文番号 123456789018", "jp_my_number", "123456789018"));
	CHECK(weak("order #641205873398 shipped", "jp_my_number", "641205873398"));
	/* The check digit fails. */
	CHECK(count("マイナンバー 123456789017", "jp_my_number", NULL, 0) == 0);
	CHECK(count("個人番号 1234 5678 9010", "jp_my_number", NULL, 0) == 0);
	CHECK(count("マイナンバー 000000000000", "jp_my_number", NULL, 0) == 0);
	/* Inside a longer number or with mixed separators. */
	CHECK(misses("マイナンバー 1123456789018", "jp_my_number"));
	CHECK(misses("マイナンバー 1234-5678 9018", "jp_my_number"));
}

AB_TEST(dlp_pii_jp_postal_code)
{
	CHECK(finds("〒100-0001 東京都千代田区", "jp_postal_code", "100-0001"));
	CHECK(finds("郵便番号：1000001", "jp_postal_code", "1000001"));
	CHECK(finds("〒 530-0001", "jp_postal_code", "530-0001"));
	CHECK(finds("530-0001 大阪府大阪市北区", "jp_postal_code", "530-0001"));
	CHECK(weak("部品番号 123-4567 在庫あり", "jp_postal_code", "123-4567"));
	CHECK(misses("090-1234-5678", "jp_postal_code"));
	CHECK(misses("(415) 555-0100", "jp_postal_code"));
	CHECK(misses("1000001", "jp_postal_code"));
	CHECK(finds("郵便番号は100-0001です", "jp_postal_code", "100-0001"));
}

AB_TEST(dlp_pii_jp_address)
{
	CHECK(finds("住所：東京都新宿区西新宿2-8-1", "jp_address", "東京都新宿区西新宿2-8-1"));
	CHECK(finds("大阪府大阪市北区梅田1丁目2番3号 架空ビル", "jp_address",
		    "大阪府大阪市北区梅田1丁目2番3号"));
	CHECK(finds("東京都港区芝公園4丁目2-8", "jp_address", "東京都港区芝公園4丁目2-8"));
	CHECK(finds("北海道札幌市中央区北1条西2丁目", "jp_address",
		    "北海道札幌市中央区北1条西2丁目"));
	CHECK(finds("神奈川県横浜市中区山下町12番地", "jp_address",
		    "神奈川県横浜市中区山下町12番地"));
	CHECK(finds("京都府京都市左京区架空町一丁目", "jp_address",
		    "京都府京都市左京区架空町一丁目"));
	CHECK(clean("東京都の天気は晴れです"));
	CHECK(misses("東京都内の区立図書館は3-4時間待ち", "jp_address"));
	CHECK(misses("東京都新宿区", "jp_address"));
	CHECK(misses("京都の町家。1-2-3", "jp_address"));
}

AB_TEST(dlp_pii_jp_residence_card)
{
	CHECK(finds("在留カード番号 AB12345678CD", "jp_residence_card", "AB12345678CD"));
	CHECK(finds("Residence card: XY87654321ZW", "jp_residence_card", "XY87654321ZW"));
	CHECK(weak("SKU AB12345678CD", "jp_residence_card", "AB12345678CD"));
	CHECK(misses("在留カード AB1234567CD", "jp_residence_card"));
	CHECK(misses("在留カード XAB12345678CD", "jp_residence_card"));
}

AB_TEST(dlp_pii_jp_drivers_license)
{
	CHECK(finds("免許証番号：123456789012", "jp_drivers_license", "123456789012"));
	CHECK(finds("運転免許証 第 301234567890 号", "jp_drivers_license", "301234567890"));
	CHECK(finds("Driver's License No. 123456789012", "jp_drivers_license", "123456789012"));
	CHECK(misses("123456789012", "jp_drivers_license"));
	CHECK(misses("運転免許 1234567890123", "jp_drivers_license"));
}

AB_TEST(dlp_pii_passport_number)
{
	CHECK(finds_at("パスポート番号 TK1234567", "passport_number", "TK1234567", 0.85f));
	CHECK(finds("旅券番号: MZ7654321", "passport_number", "MZ7654321"));
	CHECK(finds("Passport: X12345678", "passport_number", "X12345678"));
	CHECK(misses("TK1234567", "passport_number"));
	CHECK(misses("passport photo 2024", "passport_number"));
}

AB_TEST(dlp_pii_bank_account)
{
	CHECK(finds("架空銀行 渋谷支店 普通 1234567", "bank_account", "1234567"));
	CHECK(finds("口座番号 7654321（ゆうちょ）", "bank_account", "7654321"));
	CHECK(
	    finds("account number: 12345678901, routing 123456780", "bank_account", "12345678901"));
	CHECK(weak("口座番号 1234567", "bank_account", "1234567"));
	CHECK(misses("架空銀行 口座番号 12345678", "bank_account"));
	CHECK(misses("普通の日 1234567", "bank_account"));
}

AB_TEST(dlp_pii_date_of_birth)
{
	CHECK(finds("生年月日：1990年1月2日", "date_of_birth", "1990年1月2日"));
	CHECK(finds("生年月日 平成2年1月2日生", "date_of_birth", "平成2年1月2日"));
	CHECK(finds("誕生日は昭和60年12月31日です", "date_of_birth", "昭和60年12月31日"));
	CHECK(finds("生年月日 令和元年5月1日", "date_of_birth", "令和元年5月1日"));
	CHECK(finds("DOB: 01/02/1990", "date_of_birth", "01/02/1990"));
	CHECK(finds("date of birth: Jan 2, 1990", "date_of_birth", "Jan 2, 1990"));
	CHECK(finds("Birthdate 1990-01-02", "date_of_birth", "1990-01-02"));
	CHECK(finds("Date of birth (DOB): 1990.01.02", "date_of_birth", "1990.01.02"));
	CHECK(finds("born on 31/12/1985", "date_of_birth", "31/12/1985"));
	CHECK(finds("Birthday: 2 January 1990", "date_of_birth", "2 January 1990"));
	/* Dates without a label, or impossible dates. */
	CHECK(misses("会議は2024/01/02です", "date_of_birth"));
	CHECK(misses("released 1990-01-02", "date_of_birth"));
	CHECK(misses("生年月日 1990/13/45", "date_of_birth"));
	CHECK(misses("生年月日 平成40年1月1日", "date_of_birth"));
	CHECK(misses("誕生日 1月2日", "date_of_birth"));
}

AB_TEST(dlp_pii_person_name)
{
	CHECK(finds("氏名：山田太郎", "person_name", "山田太郎"));
	CHECK(finds("お名前: 山田 太郎 様", "person_name", "山田 太郎"));
	CHECK(finds("氏名　佐藤花子さん", "person_name", "佐藤花子"));
	CHECK(finds("フリガナ：ヤマダ タロウ", "person_name", "ヤマダ タロウ"));
	CHECK(finds("ふりがな: やまだ たろう", "person_name", "やまだ たろう"));
	CHECK(finds("Name: Taro Yamada", "person_name", "Taro Yamada"));
	CHECK(finds("Full name: Mary-Jane O'Neil, 34", "person_name", "Mary-Jane O'Neil"));
	CHECK(finds("First name: Hanako", "person_name", "Hanako"));
	CHECK(misses("名前を入力してください", "person_name"));
	CHECK(misses("名前変更機能", "person_name"));
	CHECK(misses("名前: 未入力のまま", "person_name"));
	CHECK(misses("name: build", "person_name"));
	CHECK(misses("File name: Report Final", "person_name"));
	CHECK(misses("\"name\": \"Widget\"", "person_name"));
	CHECK(weak("{\"name\": \"Widget Pro\"}", "person_name", "Widget Pro"));
	CHECK(finds("{\"full_name\": \"Taro Yamada\", \"age\": 34}", "person_name", "Taro Yamada"));
	CHECK(finds("{\"customerName\":\"Hanako Sato\"}", "person_name", "Hanako Sato"));
	CHECK(finds("{\"氏名\": \"山田太郎\"}", "person_name", "山田太郎"));
	CHECK(weak("Name: Widget", "person_name", "Widget"));
}

AB_TEST(dlp_pii_jp_health_insurance_and_pension)
{
	CHECK(finds("被保険者番号: 12345678", "jp_health_insurance", "12345678"));
	CHECK(finds("保険者番号 06123456", "jp_health_insurance", "06123456"));
	CHECK(misses("12345678", "jp_health_insurance"));
	CHECK(misses("被保険者番号 123456789", "jp_health_insurance"));
	/* Long-term care insurance (介護保険) numbers have ten digits. */
	CHECK(finds("介護保険 被保険者番号: 4649141085", "jp_health_insurance", "4649141085"));
	CHECK(misses("被保険者番号 12345678901", "jp_health_insurance"));
	CHECK(finds("基礎年金番号 1234-567890", "jp_pension_number", "1234-567890"));
	CHECK(finds("基礎年金番号：1234567890", "jp_pension_number", "1234567890"));
	CHECK(misses("1234-567890", "jp_pension_number"));
	CHECK(misses("基礎年金番号 1234-5678901", "jp_pension_number"));
}

AB_TEST(dlp_pii_us_bank_routing)
{
	CHECK(finds_at("ABA routing number: 123456780", "us_bank_routing", "123456780", 0.95f));
	CHECK(finds("Routing: 011234564", "us_bank_routing", "011234564"));
	CHECK(misses("routing number 123456781", "us_bank_routing"));
	/* The checksum holds, but no Federal Reserve prefix starts 50. */
	CHECK(dlp_aba_routing("501234566", 9));
	CHECK(misses("routing 501234566", "us_bank_routing"));
	CHECK(misses("123456780", "us_bank_routing"));
}

AB_TEST(dlp_pii_uk_national_insurance)
{
	CHECK(finds("AB 12 34 56 C", "uk_national_insurance", "AB 12 34 56 C"));
	CHECK(finds("NI number: AB123456C", "uk_national_insurance", "AB123456C"));
	CHECK(finds("National Insurance JT 98 76 54 D", "uk_national_insurance", "JT 98 76 54 D"));
	CHECK(weak("AB123456C", "uk_national_insurance", "AB123456C"));
	CHECK(misses("GB 12 34 56 A", "uk_national_insurance"));
	CHECK(misses("QQ 12 34 56 C", "uk_national_insurance"));
	CHECK(misses("AB 12 34 56 E", "uk_national_insurance"));
	CHECK(misses("AB 12 3456 C", "uk_national_insurance"));
}

AB_TEST(dlp_pii_json_records)
{
	const char *rec = "{\"date_of_birth\": \"1990-01-02\", \"ssn\": \"536221094\", "
			  "\"phone\": \"09012345678\", \"passport_number\": \"TK1234567\", "
			  "\"my_number\": \"123456789018\", \"postal_code\": \"100-0001\", "
			  "\"account_number\": \"76543210987\", \"routing_number\": \"123456780\"}";
	CHECK(finds(rec, "date_of_birth", "1990-01-02"));
	CHECK(finds(rec, "us_ssn", "536221094"));
	CHECK(finds(rec, "phone_number", "09012345678"));
	CHECK(finds(rec, "passport_number", "TK1234567"));
	CHECK(finds(rec, "jp_my_number", "123456789018"));
	CHECK(finds(rec, "jp_postal_code", "100-0001"));
	CHECK(finds(rec, "bank_account", "76543210987"));
	CHECK(finds(rec, "us_bank_routing", "123456780"));
}

AB_TEST(dlp_pii_ordinary_text_is_clean)
{
	CHECK(clean("東京都の天気は晴れです。明日は雨でしょう。"));
	CHECK(clean("uuid 123e4567-e89b-12d3-a456-426614174000"));
	CHECK(clean("v1.2.3 released 2024-01-02; see 10.0.19045.3803"));
	CHECK(clean("The meeting is at 10:30 on 2024/01/02 in room 301."));
	CHECK(clean("Total: 1,234,567 yen (tax 123,456)"));
	CHECK(clean("sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"));
	CHECK(clean("名前空間とクラス名を変更しました。"));
	CHECK(clean("京都府と大阪府の県境付近は、晴れ時々曇り。"));
	CHECK(clean("order 123456789018 shipped"));
	CHECK(clean("IP 192.168.100.200 port 8080"));
}

/* ---- Through the engine (dlp_scan) --------------------------------------- */

static dlp_engine *engine(void)
{
	char err[256];
	dlp_engine *e = dlp_engine_new(err, sizeof(err));
	if (!e)
		fprintf(stderr, "dlp_engine_new: %s\n", err);
	CHECK(e != NULL);
	return e;
}

/* The one finding of kind in text (by default threshold), or NULL. */
static const dlp_finding *only(const dlp_findings *f, const char *kind)
{
	const dlp_finding *got = NULL;
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->v[i].kind, kind) == 0) {
			CHECK(got == NULL);
			got = &f->v[i];
		}
	return got;
}

static void check_span(const char *text, const dlp_finding *f, const char *value)
{
	CHECK(f != NULL);
	const char *at = strstr(text, value);
	CHECK(at != NULL);
	CHECK_EQ_INT(f->start, at - text);
	CHECK_EQ_INT(f->end, at - text + (long)strlen(value));
	CHECK(f->cls == DLP_PII);
}

AB_TEST(dlp_pii_scan_a_japanese_form)
{
	const char *text = "お名前: 山田 太郎 様\n"
			   "フリガナ: ヤマダ タロウ\n"
			   "生年月日: 平成2年1月2日\n"
			   "〒160-0023 東京都新宿区西新宿2-8-1 架空ビル\n"
			   "携帯 090-1234-5678\n"
			   "メール taro.yamada@mail.fake-corp.co.jp\n"
			   "マイナンバー\n"
			   "1234 5678 9018\n"
			   "注文番号 123456789018\n"
			   "カード 4912 3456 7890 1230\n";
	dlp_engine *e = engine();
	dlp_findings f = {0};
	dlp_opts o = {.values = true};
	CHECK_EQ_INT(dlp_scan(e, text, strlen(text), &o, &f), 0);
	CHECK_EQ_INT(f.n, 9);
	check_span(text, only(&f, "jp_postal_code"), "160-0023");
	check_span(text, only(&f, "jp_address"), "東京都新宿区西新宿2-8-1");
	check_span(text, only(&f, "date_of_birth"), "平成2年1月2日");
	check_span(text, only(&f, "phone_number"), "090-1234-5678");
	check_span(text, only(&f, "email"), "taro.yamada@mail.fake-corp.co.jp");
	/* The labelled one only: the order number stays below the threshold. */
	check_span(text, only(&f, "jp_my_number"), "1234 5678 9018");
	CHECK_STR(only(&f, "jp_my_number")->value, "1234 5678 9018");
	check_span(text, only(&f, "credit_card"), "4912 3456 7890 1230");
	/* The names: one after お名前, one after フリガナ. */
	size_t names = 0;
	for (size_t i = 0; i < f.n; i++)
		names += strcmp(f.v[i].kind, "person_name") == 0;
	CHECK_EQ_INT(names, 2);
	/* Findings come sorted by start. */
	for (size_t i = 1; i < f.n; i++)
		CHECK(f.v[i - 1].start <= f.v[i].start);
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

AB_TEST(dlp_pii_scan_an_english_record)
{
	const char *text = "Full name: Taro Yamada\n"
			   "DOB: 01/02/1990\n"
			   "SSN: 536-22-1094\n"
			   "Phone: +1 (415) 555-0100\n"
			   "IBAN: GB82 WEST 1234 5698 7654 32\n"
			   "Account number: 12345678901, routing 123456780\n"
			   "Passport: X12345678\n"
			   "Build 1.2.3 on 2024-01-02, id 123e4567-e89b-12d3-a456-426614174000\n";
	dlp_engine *e = engine();
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, text, strlen(text), NULL, &f), 0);
	check_span(text, only(&f, "person_name"), "Taro Yamada");
	check_span(text, only(&f, "date_of_birth"), "01/02/1990");
	check_span(text, only(&f, "us_ssn"), "536-22-1094");
	check_span(text, only(&f, "phone_number"), "+1 (415) 555-0100");
	check_span(text, only(&f, "iban"), "GB82 WEST 1234 5698 7654 32");
	check_span(text, only(&f, "bank_account"), "12345678901");
	check_span(text, only(&f, "us_bank_routing"), "123456780");
	check_span(text, only(&f, "passport_number"), "X12345678");
	CHECK_EQ_INT(f.n, 8);
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

AB_TEST(dlp_pii_scan_prose_finds_nothing)
{
	const char *text = "東京都の天気は晴れです。明日は雨でしょう。\n"
			   "京都府と大阪府の県境付近は、晴れ時々曇り。\n"
			   "名前を入力してください。version 10.0.19045.3803\n"
			   "注文番号 123456789018 は 2024/01/02 に発送しました。\n";
	dlp_engine *e = engine();
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, text, strlen(text), NULL, &f), 0);
	for (size_t i = 0; i < f.n; i++)
		fprintf(stderr, "unexpected %s at %zu\n", f.v[i].kind, f.v[i].start);
	CHECK_EQ_INT(f.n, 0);
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

AB_TEST(dlp_pii_scan_full_width_digits)
{
	/* 携帯：０９０ー１２３４ー５６７８ in full-width digits and a long
	 * vowel mark for the hyphens: the normaliser makes them ASCII. */
	const char *text = "携帯：０９０ー１２３４ー５６７８ まで";
	dlp_buf nb = {0};
	if (dlp_normalize(text, strlen(text), &nb) <= 0)
		SKIP("the normaliser does not convert full-width digits yet");
	dlp_buf_free(&nb);
	dlp_engine *e = engine();
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, text, strlen(text), NULL, &f), 0);
	check_span(text, only(&f, "phone_number"), "０９０ー１２３４ー５６７８");
	CHECK(f.v[0].nchain >= 1 && f.v[0].chain[0] == DLP_DEC_NFKC);
	dlp_findings_free(&f);
	dlp_engine_free(e);
}
