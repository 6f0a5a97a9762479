"""The partners service's SQL (plain SQL, asyncpg). One statement per request."""

# The latest offer version of each store, joined in the same round trip as the stores.
_STORE_WITH_OFFER = """
SELECT s.merchant_id, s.name, s.country, s.category, s.currency, s.website,
       o.version, o.rate_bps, o.valid_from, o.valid_until, o.set_at
  FROM partner_store s
  LEFT JOIN LATERAL (
        SELECT version, rate_bps, valid_from, valid_until, set_at FROM partner_offer o
         WHERE o.merchant_id = s.merchant_id ORDER BY o.version DESC LIMIT 1) o ON true
"""

LIST_PARTNERS = (
    _STORE_WITH_OFFER
    + """
 WHERE ($1::text IS NULL OR s.country = $1)
   AND ($2::text IS NULL OR s.category = $2)
   AND ($3::uuid IS NULL OR s.merchant_id > $3)
 ORDER BY s.merchant_id
 LIMIT $4
"""
)

GET_PARTNER = _STORE_WITH_OFFER + " WHERE s.merchant_id = $1"

# A new offer version: the UPDATE bumps the store's counter (concurrent changes of one store wait for
# each other, so versions never collide) and the event that drops every instance's cache leaves in
# the same transaction. No row when the merchant is not a partner store.
SET_OFFER = """
WITH store AS (
    UPDATE partner_store SET offer_version = offer_version + 1, updated_at = now()
     WHERE merchant_id = $1
    RETURNING merchant_id, offer_version
), offer AS (
    INSERT INTO partner_offer (merchant_id, version, rate_bps, valid_from, valid_until, set_by)
    SELECT merchant_id, offer_version, $2, $3, $4, $5 FROM store
    RETURNING merchant_id, version, rate_bps, valid_from, valid_until, set_at
)
SELECT offer.*, outbox_add('partner.offer_changed', 'partners',
                           jsonb_build_object('merchant_id', offer.merchant_id, 'version', offer.version))
       AS event_id
  FROM offer
"""

# merchant.registered: the merchant becomes a partner store (no offer yet). A replay changes nothing.
REGISTER_PARTNER = """
WITH store AS (
    INSERT INTO partner_store (merchant_id, name, country, currency, category, website, registered_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (merchant_id) DO NOTHING
    RETURNING merchant_id
)
SELECT outbox_add('partner.offer_changed', 'partners', jsonb_build_object('merchant_id', merchant_id))
  FROM store
"""
