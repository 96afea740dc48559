/* test_validate.c - the checksums detectors confirm with. Every value is
 * fake: made up, then completed with its check digits. */
#include "dlp_internal.h"
#include "unit.h"

static bool luhn(const char *s)
{
	return dlp_luhn(s, strlen(s));
}

static bool iban(const char *s)
{
	return dlp_iban(s, strlen(s));
}

static bool my_number(const char *s)
{
	return dlp_my_number(s, strlen(s));
}

static bool aba(const char *s)
{
	return dlp_aba_routing(s, strlen(s));
}

AB_TEST(dlp_validate_luhn_valid_numbers)
{
	CHECK(luhn("4912345678901230"));    /* 16 digits */
	CHECK(luhn("371234567890120"));	    /* 15 digits */
	CHECK(luhn("300123456789012"));	    /* 15 digits */
	CHECK(luhn("4912345678901234566")); /* 19 digits */
	CHECK(luhn("0"));		    /* one digit: sum 0 */
}

AB_TEST(dlp_validate_luhn_invalid_numbers)
{
	CHECK(!luhn("4912345678901231"));
	CHECK(!luhn("4912345678901239"));
	/* Two adjacent digits swapped (other than 0/9) are caught. */
	CHECK(!luhn("4912345678901320"));
	CHECK(!luhn(""));
	CHECK(!luhn("----"));
}

AB_TEST(dlp_validate_luhn_skips_separators)
{
	CHECK(luhn("4912 3456 7890 1230"));
	CHECK(luhn("4912-3456-7890-1230"));
	CHECK(!luhn("4912-3456-7890-1231"));
}

AB_TEST(dlp_validate_iban_valid)
{
	CHECK(iban("GB82WEST12345698765432"));
	CHECK(iban("DE12500105170648489890"));
	CHECK(iban("FR7630006000011234567890189"));
	CHECK(iban("IT60X0542811101000000123456"));
	CHECK(iban("ES9121000418450200051332"));
	CHECK(iban("NL91ABNA0417164300"));
	CHECK(iban("NO9386011117947")); /* the shortest: 15 */
}

AB_TEST(dlp_validate_iban_spaces_and_case)
{
	CHECK(iban("GB82 WEST 1234 5698 7654 32"));
	CHECK(iban("DE12 5001 0517 0648 4898 90"));
	CHECK(iban("gb82west12345698765432"));
	/* Only spaces are separators. */
	CHECK(!iban("GB82-WEST-1234-5698-7654-32"));
}

AB_TEST(dlp_validate_iban_invalid)
{
	CHECK(!iban("GB83WEST12345698765432"));	 /* check digits */
	CHECK(!iban("GB82WEST12345698765433"));	 /* one digit changed */
	CHECK(!iban("GB82WEST1234569876543"));	 /* GB is 22, not 21 */
	CHECK(!iban("DE125001051706484898901")); /* DE is 22, not 23 */
	/* A country without IBANs, though its mod-97 is right. */
	CHECK(!iban("JP961234"));
	CHECK(!iban("ZZ00123456789012345"));
	CHECK(!iban(""));
	CHECK(!iban("GB82WEST12345698765432GB82WEST12345698765432")); /* > 34 */
	CHECK(!iban("GBXXWEST12345698765432"));
	CHECK(!iban("GB82WEST1234569876543!"));
}

AB_TEST(dlp_validate_my_number_valid)
{
	/* 12345678901: weighted sum 212, 212 mod 11 = 3, check 8. */
	CHECK(my_number("123456789018"));
	CHECK(my_number("472910385622"));
	CHECK(my_number("204829375103"));
	CHECK(my_number("641205873398"));
	/* Remainder 0 or 1 gives the check digit 0. */
	CHECK(my_number("305817264900"));
}

AB_TEST(dlp_validate_my_number_invalid)
{
	for (char c = '0'; c <= '9'; c++) {
		char s[] = "12345678901x";
		s[11] = c;
		CHECK(my_number(s) == (c == '8'));
	}
	CHECK(!my_number("123456789081"));  /* swapped */
	CHECK(!my_number("12345678901"));   /* 11 digits */
	CHECK(!my_number("1234567890188")); /* 13 digits */
	CHECK(!my_number(""));
	CHECK(!my_number("12345678901A"));
}

AB_TEST(dlp_validate_my_number_separators)
{
	CHECK(my_number("1234 5678 9018"));
	CHECK(my_number("1234-5678-9018"));
	CHECK(!my_number("1234-5678-9017"));
	CHECK(!my_number("1234.5678.9018"));
}

AB_TEST(dlp_validate_aba_routing_checksum)
{
	CHECK(aba("123456780"));
	CHECK(aba("011234564"));
	CHECK(aba("321076548"));
	CHECK(aba("1234-5678-0"));
	CHECK(!aba("123456781"));
	CHECK(!aba("213456780")); /* swapped */
	CHECK(!aba("12345678"));
	CHECK(!aba("1234567800"));
	CHECK(!aba(""));
}
