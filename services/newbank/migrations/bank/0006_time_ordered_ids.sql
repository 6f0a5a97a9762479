-- Payments, refunds, deposits and credited redemptions get time-ordered ids (common/0005 says why).
SELECT use_time_ordered_ids(ARRAY['make_payment', 'make_refund', 'make_deposit', 'credit_redemption']);
