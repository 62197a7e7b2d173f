// Alerts on the Web App: p95 response time over 2 s (log query on requests) and
// the HTTP 5xx rate (metric). Both notify the shared action group.

@description('Tags shared by every resource.')
param tags object

@description('Base for alert names.')
param baseName string

@description('Resource id of the Web App.')
param siteId string

@description('Application Insights resource id.')
param appInsightsId string

@description('Action group id.')
param actionGroupId string

@description('Region of the Application Insights component (log alerts live there).')
param location string = resourceGroup().location

resource p95ResponseTime 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${baseName}-p95-response-time'
  location: location
  tags: tags
  properties: {
    description: 'p95 server response time above 2 seconds over 15 minutes.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'requests | summarize p95 = percentile(duration, 95) by bin(timestamp, 5m)'
          metricMeasureColumn: 'p95'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 2000
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

resource http5xx 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${baseName}-http-5xx'
  location: 'global'
  tags: tags
  properties: {
    description: 'More than 10 HTTP 5xx responses in 5 minutes.'
    severity: 1
    enabled: true
    scopes: [
      siteId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'http5xx'
          criterionType: 'StaticThresholdCriterion'
          metricName: 'Http5xx'
          metricNamespace: 'Microsoft.Web/sites'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 10
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}
